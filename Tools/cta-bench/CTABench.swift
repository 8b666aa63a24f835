import ArgumentParser

@main
struct CTABench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cta-bench",
        abstract: "Measures CTA against raw C baselines taken in the same run; prints one JSON line per figure.",
        subcommands: [BrokerBench.self, StoreBench.self, AgentBench.self, ConsumerBench.self]
    )
}
