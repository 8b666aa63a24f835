import ArgumentParser

struct BrokerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "AMQP publish-with-confirms and consume rates, next to raw librabbitmq."
    )
    func run() async throws {}
}
