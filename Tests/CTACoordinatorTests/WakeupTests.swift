import Testing

@testable import CTACoordinator

@Suite("Waking the composer")
struct WakeupTests {
    @Test("a signal given before the wait is kept: the next wait returns at once, the one after waits", .timeLimit(.minutes(1)))
    func signalBeforeWait() async {
        let wakeup = Wakeup()
        wakeup.signal()
        wakeup.signal()
        let clock = ContinuousClock()
        let first = await clock.measure { await wakeup.wait(upTo: .seconds(30)) }
        #expect(first < .seconds(30))
        // Two signals before a wait count as one: this wait runs until its time is up.
        let second = await clock.measure { await wakeup.wait(upTo: .milliseconds(200)) }
        #expect(second >= .milliseconds(200))
    }

    @Test("a signal during the wait ends it", .timeLimit(.minutes(1)))
    func signalDuringWait() async {
        let wakeup = Wakeup()
        let clock = ContinuousClock()
        async let waited = clock.measure { await wakeup.wait(upTo: .seconds(30)) }
        try? await Task.sleep(for: .milliseconds(100))
        wakeup.signal()
        #expect(await waited < .seconds(30))
    }
}
