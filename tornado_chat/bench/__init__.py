"""tornado-chat-bench: load tests of tornado-chat side by side with small peer servers.

Standard library and Tornado only at run time (uvloop is used when it is installed). The load
generator is a lean WebSocket client on asyncio protocols (``wsclient``); ``targets`` starts and stops
the servers under test; ``workloads`` holds W1-W5; ``report`` prints the table and writes the JSON.
See docs/benchmarks.md for the figures and how to reproduce them.
"""
