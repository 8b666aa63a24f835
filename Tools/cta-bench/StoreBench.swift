import ArgumentParser

struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "MongoDB insert, bulk insert and find rates, next to raw libmongoc."
    )
    func run() async throws {}
}
