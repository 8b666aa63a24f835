public import CTACore
import Glibc
import Foundation

/// What an agent tells the coordinator about its machine when it registers.
public struct HostFacts: Sendable, Hashable {
    /// The host name (`gethostname`).
    public var hostname: String
    /// The machine's addresses, numeric: IPv4 first, then IPv6, each in address order, without duplicates,
    /// loopback or link-local addresses.
    public var addresses: [String]
    /// The operating system: `ID` and `VERSION_ID` of os-release, else `uname`'s system name and release.
    public var os: OperatingSystem
    /// The CPU architecture (`uname` machine), e.g. `x86_64`, `aarch64`.
    public var arch: String
    /// Logical CPUs online.
    public var cpuCount: Int
    /// Physical memory in bytes.
    public var memoryBytes: UInt64

    /// Creates host facts.
    public init(
        hostname: String,
        addresses: [String],
        os: OperatingSystem,
        arch: String,
        cpuCount: Int,
        memoryBytes: UInt64
    ) {
        self.hostname = hostname
        self.addresses = addresses
        self.os = os
        self.arch = arch
        self.cpuCount = cpuCount
        self.memoryBytes = memoryBytes
    }

    /// Reads the facts of the machine this process runs on. Reads a few small files and makes system calls that
    /// do not block for long; call it once at start.
    public static func detect() -> HostFacts {
        let system = UnameFacts.current()
        let osRelease = readSmallFile("/etc/os-release") ?? readSmallFile("/usr/lib/os-release")
        let pageCount = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        let fallbackMemory = pageCount > 0 && pageSize > 0 ? UInt64(pageCount) * UInt64(pageSize) : 0
        return HostFacts(
            hostname: currentHostname(),
            addresses: interfaceAddresses(),
            os: operatingSystem(osRelease: osRelease.map(parseOSRelease) ?? [:], uname: system),
            arch: system.machine,
            cpuCount: max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            memoryBytes: readSmallFile("/proc/meminfo").flatMap(memTotal) ?? fallbackMemory
        )
    }

    /// The 1, 5 and 15 minute load averages (`getloadavg`); zeros when the system does not tell.
    public static func loadAverage() -> LoadAverage {
        var samples = [Double](repeating: 0, count: 3)
        guard getloadavg(&samples, 3) == 3 else { return LoadAverage(one: 0, five: 0, fifteen: 0) }
        return LoadAverage(one: samples[0], five: samples[1], fifteen: samples[2])
    }

    // MARK: Pure parts

    /// Parses os-release text (`KEY=value` lines; values unquoted, or in single or double quotes with `\`
    /// escapes in double quotes). Comments, blank lines and malformed lines are skipped.
    static func parseOSRelease(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.drop { $0 == " " || $0 == "\t" }
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<equals])
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                continue
            }
            var value = Substring(line[line.index(after: equals)...])
            while let last = value.last, last == " " || last == "\t" { value.removeLast() }
            if let quote = value.first, quote == "\"" || quote == "'" {
                var result = ""
                var escaped = false
                var closed = false
                for character in value.dropFirst() {
                    if escaped {
                        // Only these may be escaped in os-release; elsewhere the backslash stays.
                        if !"\"\\$`".contains(character) { result.append("\\") }
                        result.append(character)
                        escaped = false
                    } else if character == "\\", quote == "\"" {
                        escaped = true
                    } else if character == quote {
                        closed = true
                        break
                    } else {
                        result.append(character)
                    }
                }
                guard closed else { continue }
                fields[key] = result
            } else {
                fields[key] = String(value)
            }
        }
        return fields
    }

    /// The operating system from os-release fields, falling back to `uname` for what they lack.
    ///
    /// The version is `VERSION_ID`, else `VERSION_CODENAME` (testing releases), else `BUILD_ID` (rolling
    /// releases), else the kernel release.
    static func operatingSystem(osRelease: [String: String], uname: UnameFacts) -> OperatingSystem {
        func field(_ key: String) -> String? {
            guard let value = osRelease[key], !value.isEmpty else { return nil }
            return value
        }
        let name = field("ID") ?? uname.sysname.lowercased()
        let version = field("VERSION_ID") ?? field("VERSION_CODENAME") ?? field("BUILD_ID") ?? uname.release
        return OperatingSystem(name: name.isEmpty ? "unknown" : name, version: version.isEmpty ? "unknown" : version)
    }

    /// `MemTotal` of `/proc/meminfo` in bytes.
    static func memTotal(_ meminfo: String) -> UInt64? {
        for line in meminfo.split(whereSeparator: \.isNewline) where line.hasPrefix("MemTotal:") {
            let fields = line.dropFirst("MemTotal:".count).split(separator: " ")
            guard let number = fields.first.flatMap({ UInt64($0) }) else { return nil }
            let unit = fields.count > 1 ? fields[1].lowercased() : "b"
            let (bytes, overflow) = number.multipliedReportingOverflow(by: unit == "kb" ? 1024 : 1)
            return overflow ? nil : bytes
        }
        return nil
    }

    /// Orders addresses IPv4 first, then IPv6, each numerically; drops duplicates.
    static func sortedAddresses(_ addresses: [String]) -> [String] {
        func key(_ address: String) -> (family: Int, bytes: [UInt8]) {
            var v4 = in_addr()
            if inet_pton(AF_INET, address, &v4) == 1 { return (0, withUnsafeBytes(of: &v4) { Array($0) }) }
            var v6 = in6_addr()
            if inet_pton(AF_INET6, address, &v6) == 1 { return (1, withUnsafeBytes(of: &v6) { Array($0) }) }
            return (2, Array(address.utf8))
        }
        let unique = Array(Set(addresses))
        let keys = Dictionary(uniqueKeysWithValues: unique.map { ($0, key($0)) })
        return unique.sorted { a, b in
            let (left, right) = (keys[a]!, keys[b]!)
            if left.family != right.family { return left.family < right.family }
            return left.bytes.lexicographicallyPrecedes(right.bytes)
        }
    }

    /// Whether an address says nothing about how to reach the machine from elsewhere: loopback, link-local
    /// (`fe80::/10`, `169.254.0.0/16`) or unspecified.
    static func isLocalOnly(_ address: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            let bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return bytes[0] == 127 || (bytes[0] == 169 && bytes[1] == 254) || bytes == [0, 0, 0, 0]
        }
        var v6 = in6_addr()
        // A numeric link-local address may carry a zone ("fe80::1%eth0"), which inet_pton refuses.
        let plain = address.split(separator: "%", maxSplits: 1).first.map(String.init) ?? address
        guard inet_pton(AF_INET6, plain, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        let loopback = bytes == [UInt8](repeating: 0, count: 15) + [1]
        let unspecified = bytes.allSatisfy { $0 == 0 }
        return loopback || unspecified || (bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80)
    }

    // MARK: System calls

    static func currentHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func interfaceAddresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            cursor = entry.pointee.ifa_next
            guard let address = entry.pointee.ifa_addr,
                entry.pointee.ifa_flags & UInt32(IFF_LOOPBACK) == 0
            else { continue }
            let family = Int32(address.pointee.sa_family)
            let length: Int
            switch family {
            case AF_INET: length = MemoryLayout<sockaddr_in>.size
            case AF_INET6: length = MemoryLayout<sockaddr_in6>.size
            default: continue
            }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard getnameinfo(address, socklen_t(length), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0
            else { continue }
            let text = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !isLocalOnly(text) { addresses.append(text) }
        }
        return sortedAddresses(addresses)
    }

    /// Reads a small text file whole; nil when it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while bytes.count < 1 << 20 {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The fields of `uname` the host facts use.
struct UnameFacts: Hashable, Sendable {
    var sysname: String
    var release: String
    var machine: String

    static func current() -> UnameFacts {
        var names = utsname()
        guard uname(&names) == 0 else { return UnameFacts(sysname: "", release: "", machine: "") }
        func string<T>(_ field: inout T) -> String {
            withUnsafeBytes(of: &field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return UnameFacts(
            sysname: string(&names.sysname),
            release: string(&names.release),
            machine: string(&names.machine)
        )
    }
}

extension HostFacts {
    /// ``detect()`` on a thread of its own: it reads files and calls into libc, which must not occupy a thread of
    /// Swift's cooperative pool.
    public static func detectOffPool() async -> HostFacts {
        await onDedicatedThread("cta-host-facts") { detect() }
    }
}
