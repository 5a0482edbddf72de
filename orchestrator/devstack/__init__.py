"""The whole voice stack on one machine: livekit-server, the API and both workers, and WebRTC callers.

Media needs an address libwebrtc will use, and it ignores loopback, so the stack can run in a pair of
network namespaces of its own (`netns`) joined by a veth link on a private subnet.
"""
