import CTACore
import Foundation
import Glibc
import Testing

@testable import CTAAgent

@Suite("Stage runner: volume and concurrency")
struct RunnerVolumeTests {
    @Test("a long log keeps head and tail in place; the middle is in the spill file; the bytes add up")
    func headAndTail() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let lines = 300_000
        let outcome = await testRunner(head: 16 * 1024, tail: 24 * 1024).run(
            Stage(name: "seq", run: "seq 1 \(lines)"), in: sandbox.context())
        #expect(outcome.succeeded)
        let expected = Array((1...lines).map { "\($0)\n" }.joined().utf8)
        #expect(outcome.log.totalBytes == UInt64(expected.count))

        let spillPath = try #require(outcome.log.spillPath)
        let spilled = try [UInt8](Data(contentsOf: URL(fileURLWithPath: spillPath)))
        #expect(UInt64(spilled.count) == outcome.log.spilledBytes)

        let log = try [UInt8](Data(contentsOf: URL(fileURLWithPath: outcome.log.path)))
        let marker = Array("… \(spilled.count) bytes omitted, see attachment seq.omitted.log …\n".utf8)
        let markerStart = try #require(find(marker, in: log))
        let head = Array(log[..<markerStart])
        let tail = Array(log[(markerStart + marker.count)...])
        #expect(head.count <= 16 * 1024 && head.count > 8 * 1024)
        #expect(tail.count <= 24 * 1024 && tail.count > 12 * 1024)
        #expect(head.last == UInt8(ascii: "\n"))
        #expect(head.count + spilled.count + tail.count == expected.count)
        #expect(head + spilled + tail == expected)
    }

    @Test("50 MB of output passes through with bounded memory")
    func boundedMemory() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let before = maxResidentKilobytes()
        let outcome = await testRunner(head: 64 * 1024, tail: 64 * 1024).run(
            Stage(name: "flood", run: "head -c 50000000 /dev/zero | tr '\\0' a; echo; echo the-end"),
            in: sandbox.context())
        #expect(outcome.succeeded)
        #expect(outcome.log.totalBytes == 50_000_000 + 1 + 8)
        let spillPath = try #require(outcome.log.spillPath)
        let spillSize = try #require(
            try FileManager.default.attributesOfItem(atPath: spillPath)[.size] as? NSNumber)
        #expect(spillSize.uint64Value == outcome.log.spilledBytes)
        #expect(outcome.log.spilledBytes > 49_800_000)
        #expect(readText(outcome.log.path).hasSuffix("\nthe-end\n"))
        let growth = maxResidentKilobytes() - before
        #expect(growth < 30_000, "peak RSS grew by \(growth) KiB")
    }

    @Test("twenty stages at once all complete with their own outcome and log")
    func concurrent() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let runner = testRunner()
        let context = sandbox.context()
        let outcomes = await withTaskGroup(of: (Int, StageOutcome).self) { group in
            for index in 0..<20 {
                group.addTask {
                    let stage = Stage(
                        name: "stage-\(index)", run: "echo \"$CTA_STAGE\"; seq 1 2000 >&2; sleep 0.2; exit \(index % 4)"
                    )
                    return (index, await runner.run(stage, in: context))
                }
            }
            var all: [Int: StageOutcome] = [:]
            for await (index, outcome) in group { all[index] = outcome }
            return all
        }
        #expect(outcomes.count == 20)
        for (index, outcome) in outcomes {
            #expect(outcome.termination == .exited(Int32(index % 4)))
            let log = readText(outcome.log.path)
            #expect(log.hasPrefix("stage-\(index)\n"))
            #expect(log.hasSuffix("\n2000\n"))
            #expect(outcome.log.totalBytes == UInt64(log.utf8.count))
            #expect(ms(outcome.duration) < 20_000)
        }
    }
}

private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard needle.count <= haystack.count else { return nil }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if haystack[start..<(start + needle.count)].elementsEqual(needle) { return start }
    }
    return nil
}

private func maxResidentKilobytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss
}
