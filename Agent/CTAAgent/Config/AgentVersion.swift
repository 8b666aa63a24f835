/// The version of the agent, as it registers and reports it.
public enum AgentVersion {
    /// The version of this build.
    public static let current = "0.1.0"
}
