/// What this connection declared, so it can be declared again, in order, after a reconnect.
///
/// A broker restart keeps durable exchanges and queues but loses transient ones and every exclusive or
/// auto-delete queue; re-declaring everything is idempotent, so the log replays everything it holds.
struct TopologyLog {
    private(set) var operations: [BrokerOperation] = []

    mutating func record(_ operation: BrokerOperation) {
        switch operation {
        case .declareExchange(let name, _, _, _, _, _):
            operations.removeAll { if case .declareExchange(name, _, _, _, _, _) = $0 { true } else { false } }
            operations.append(operation)
        case .declareQueue(let name, _, _, _, _):
            operations.removeAll { if case .declareQueue(name, _, _, _, _) = $0 { true } else { false } }
            operations.append(operation)
        case .bindQueue(let queue, let exchange, let key, let arguments):
            if !operations.contains(where: { Self.isBinding($0, queue, exchange, key, arguments) }) { operations.append(operation) }
        case .unbindQueue(let queue, let exchange, let key, let arguments):
            operations.removeAll { Self.isBinding($0, queue, exchange, key, arguments) }
        case .deleteQueue(let name, _, _):
            operations.removeAll {
                switch $0 {
                case .declareQueue(name, _, _, _, _): true
                case .bindQueue(name, _, _, _): true
                default: false
                }
            }
        case .deleteExchange(let name):
            operations.removeAll {
                switch $0 {
                case .declareExchange(name, _, _, _, _, _): true
                case .bindQueue(_, name, _, _): true
                default: false
                }
            }
        case .inspectQueue, .purgeQueue:
            break
        }
    }

    func replay() -> [BrokerOperation] { operations }

    private static func isBinding(_ op: BrokerOperation, _ queue: String, _ exchange: String, _ key: String, _ arguments: AMQPTable) -> Bool {
        if case .bindQueue(queue, exchange, key, arguments) = op { return true }
        return false
    }
}
