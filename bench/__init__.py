"""The benchmark tool (tornado-chat-bench): load tests of tornado-chat side by side with small peer servers.

Run from a checkout as ``python -m bench``; it is not part of the installed package. Standard library and
Tornado only at run time (uvloop is used when it is installed). The load generator is a lean WebSocket
client on asyncio protocols (``wsclient``, framing by ``wsframe``, which the tests share); ``targets``
starts and stops the servers under test; ``baseline`` checks out tornado-chat at another commit as one
more target; ``workloads`` holds W1-W5; ``report`` prints the table and writes the JSON. See
docs/benchmarks.md for the figures and how to reproduce them.
"""
