import Foundation
import Testing

/// A free TCP port on 127.0.0.1 (bound, read, released).
func freePort() throws -> Int { try freePort(in: nil) }

/// A free TCP port below Linux's ephemeral range, for a server that is killed and started again on the same port:
/// a client reconnecting in a loop to a port in that range while the server is down can connect to itself.
func freeFixedPort() throws -> Int {
    for _ in 0..<50 {
        let port = Int.random(in: 24_100..<24_900)
        if (try? freePort(in: port)) != nil { return port }
    }
    throw CancellationError()
}

/// Binds `port` (0 or nil: any) on 127.0.0.1 and returns the port bound.
private func freePort(in port: Int?) throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port ?? 0).bigEndian
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(bound == 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
