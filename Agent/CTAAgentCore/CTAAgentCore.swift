/// The agent's logic that does no I/O: report parsing, log retention, run state machines.
public enum AgentCore {}
