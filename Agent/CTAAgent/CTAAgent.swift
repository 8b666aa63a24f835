/// The agent's services: the durable spool, the stage runner, the transports.
public enum Agent {}
