// The agent's entry point; see AgentCommand.
