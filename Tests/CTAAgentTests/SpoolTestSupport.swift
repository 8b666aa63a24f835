import CTACore
import Foundation
import Glibc
import Logging
import Synchronization

@testable import CTAAgent

/// A fresh directory under the system's temporary directory, removed when the value goes away.
final class TemporaryDirectory: Sendable {
    let path: String

    init() {
        var template = Array((NSTemporaryDirectory() + "/cta-spool-test-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: made!)
    }

    /// The spool directory inside it (created by the spool itself).
    var spool: String { path + "/spool" }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Collects log messages so tests can check what the spool said.
final class LogRecorder: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let entries = Mutex<[Entry]>([])

    var all: [Entry] { entries.withLock { $0 } }

    func contains(_ level: Logger.Level, _ fragment: String) -> Bool {
        all.contains { $0.level == level && $0.message.contains(fragment) }
    }

    fileprivate func record(_ entry: Entry) { entries.withLock { $0.append(entry) } }

    var logger: Logger {
        Logger(label: "cta.spool.test") { _ in Handler(recorder: self) }
    }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = metadata
            for (key, value) in event.metadata ?? [:] { merged[key] = value }
            recorder.record(
                Entry(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }
}

/// A stand-in for an encoded envelope: JSON text that names its epoch and seq, padded to `size` bytes.
func testPayload(epoch: SequenceEpoch, seq: UInt64, size: Int = 64) -> [UInt8] {
    var text = "{\"epoch\":\"\(epoch)\",\"seq\":\(seq),\"pad\":\""
    let tail = "\"}"
    if text.utf8.count + tail.utf8.count < size {
        text += String(repeating: "x", count: size - text.utf8.count - tail.utf8.count)
    }
    return Array((text + tail).utf8)
}

/// The seq a ``testPayload(epoch:seq:size:)`` names.
func seq(inPayload payload: [UInt8]) -> UInt64? {
    let text = String(decoding: payload, as: UTF8.self)
    guard let range = text.range(of: "\"seq\":") else { return nil }
    return UInt64(text[range.upperBound...].prefix(while: \.isNumber))
}

/// A seeded generator, so a failing randomized run can be repeated from the seed it prints.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Helpers that reach into the spool's files the way a crash or a bad disk would.
enum SpoolFiles {
    static func names(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    static func segments(in directory: String) -> [String] {
        names(in: directory).filter { $0.hasPrefix("segment-") && $0.hasSuffix(".log") }
    }

    static func newestSegment(in directory: String) -> String? {
        segments(in: directory).last.map { directory + "/" + $0 }
    }

    static func read(_ path: String) -> [UInt8] {
        (try? Array(Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
    }

    static func write(_ bytes: [UInt8], to path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    static func append(_ bytes: [UInt8], to path: String) {
        write(read(path) + bytes, to: path)
    }

    static func truncate(_ path: String, to size: Int) {
        _ = Glibc.truncate(path, off_t(size))
    }

    static func size(_ path: String) -> Int { read(path).count }
}

/// Opens a synchronous spool with a small configuration suited to tests.
func openCore(
    _ directory: String,
    _ configuration: SpoolConfiguration = SpoolConfiguration(),
    recorder: LogRecorder = LogRecorder()
) throws -> SpoolCore {
    try SpoolCore(directory: directory, configuration: configuration, logger: recorder.logger)
}

extension SpoolCore {
    /// Appends one test payload and returns its seq.
    @discardableResult
    func appendTest(size: Int = 64) throws -> UInt64 {
        try append { epoch, seq in testPayload(epoch: epoch, seq: seq, size: size) }
    }

    /// The seqs of every pending record.
    func pendingSeqs() throws -> [UInt64] {
        try pending().map(\.seq)
    }
}
