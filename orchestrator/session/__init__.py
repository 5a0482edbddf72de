"""Sessions: LiveKit AgentSession wiring, GraphLLM and the transports (room, local text, local audio)."""
