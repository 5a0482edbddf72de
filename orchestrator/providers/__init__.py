"""The only place vendor SDKs are chosen: LLM, STT, TTS and the phrase cache."""
