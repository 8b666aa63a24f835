import ArgumentParser

@main
struct CTABench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cta-bench",
        abstract: "Measures CTA against raw C baselines taken in the same run; prints one JSON line per figure.",
        subcommands: subcommands
    )

    #if canImport(CTAAPI)
    static let subcommands: [any ParsableCommand.Type] = [
        BrokerBench.self, StoreBench.self, AgentBench.self, ConsumerBench.self, APIBench.self, GatewayBench.self,
    ]
    #else
    /// A core-only build (`CTA_PACKAGE_CORE_ONLY=1`) has no HTTP side to measure.
    static let subcommands: [any ParsableCommand.Type] = [
        BrokerBench.self, StoreBench.self, AgentBench.self, ConsumerBench.self,
    ]
    #endif
}
