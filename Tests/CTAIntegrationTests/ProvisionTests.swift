import CTACoordinator
import CTACore
import CTADefinitions
import Foundation
import Testing

extension CoordinatorProcessSuites {
    /// VMs made on the fly by a configuration's `provision` commands. The "VM" here is a real agent process the
    /// create script starts under the name the coordinator gives it; destroying it kills that process.
    @Suite(
        "VMs made for executions: create, dispatch, destroy at the end or at the VM timeout",
        .serialized, .enabled(if: EndToEndBroker.enabled, "needs CTA_AMQP_E2E_URL and CTA_MONGO_URI"))
    struct ProvisionTests {
        /// Writes create and destroy scripts for VMs whose agents talk to `broker`, under `directory`.
        static func scripts(directory: String, broker: String, group: GroupName) throws -> (create: String, destroy: String) {
            let agent = try AgentProcess.binary()
            let create = directory + "/vm-create.sh"
            let destroy = directory + "/vm-destroy.sh"
            try """
                #!/bin/sh
                set -e
                dir="\(directory)/vms/$CTA_VM_NAME"
                mkdir -p "$dir/work" "$dir/state"
                cat > "$dir/agent.yaml" <<END
                broker:
                  url: \(broker)
                machine: $CTA_VM_NAME
                groups: [\(group)]
                directories:
                  work: $dir/work
                  state: $dir/state
                heartbeat:
                  interval: 1s
                executions:
                  gracePeriod: 2s
                END
                nohup "\(agent)" --config "$dir/agent.yaml" >"$dir/agent.log" 2>&1 &
                echo $! >"$dir/pid"
                echo "created $CTA_VM_NAME for $CTA_EXECUTION_ID"
                """.write(toFile: create, atomically: true, encoding: .utf8)
            try """
                #!/bin/sh
                dir="\(directory)/vms/$CTA_VM_NAME"
                [ -f "$dir/pid" ] && kill -9 "$(cat "$dir/pid")"
                touch "$dir/destroyed"
                echo "destroyed $CTA_VM_NAME"
                """.write(toFile: destroy, atomically: true, encoding: .utf8)
            return ("sh " + create, "sh " + destroy)
        }

        static func vmPid(_ directory: String, _ vm: MachineName) -> pid_t? {
            (try? String(contentsOfFile: "\(directory)/vms/\(vm)/pid", encoding: .utf8))
                .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }

        /// Alive and not a zombie (an orphan is reaped by whatever reaps orphans here, maybe late).
        static func alive(_ pid: pid_t) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            return stat[stat.index(close, offsetBy: 2)] != "Z"
        }

        @Test("a VM per execution: it runs there and is destroyed at the end; at the VM timeout the execution is cancelled and the VM destroyed; a failed create is the pending explanation")
        func provisionedExecutions() async throws {
            try await withScene(agents: 0) { scene in
                let (create, destroy) = try Self.scripts(directory: scene.directory, broker: scene.brokerURL, group: scene.group)
                let vm = ProvisionDefinition(create: create, destroy: destroy, vmTimeoutMs: Milliseconds(60_000))
                let short = ProvisionDefinition(create: create, destroy: destroy, vmTimeoutMs: Milliseconds(4_000))
                let broken = ProvisionDefinition(
                    create: "echo 'no capacity left in pool' >&2; exit 3", destroy: "echo nothing to destroy",
                    vmTimeoutMs: Milliseconds(60_000))
                let quick = try await scene.define(
                    [E2ETests.shell("on-vm", "echo running $CTA_EXECUTION_ID; test -n \"$CTA_EXECUTION_ID\"")], runMode: .mono,
                    provision: vm)
                let stuck = try await scene.define(
                    [E2ETests.shell("too-long", "sleep 60")], runMode: .mono, provision: short)
                let failing = try await scene.define(
                    [E2ETests.shell("never", "true")], runMode: .mono, pending: Milliseconds(3_000), provision: broken)
                let requested = try await [quick, stuck, failing].asyncMap {
                    try await scene.store.requestExecution(of: $0, requestedBy: "test/vm").executionID
                }
                let ended = try await requested.asyncMap { try await scene.waitForEnd($0, timeout: .seconds(90)) }
                let names = requested.map(VMRecord.name(for:))

                // 1. Ran on its own VM, which was destroyed once the execution ended.
                #expect(ended[0].phase == .finished, "\(ended[0].endReason ?? "")\n\(scene.diagnostics())")
                let results = try await scene.store.results(requested[0])
                #expect(results.map(\.result.status) == [.ok])
                #expect(results.map(\.result.machine) == [names[0]])
                // 2. The VM timeout cancelled the execution running on it (cause timeout), then it was destroyed.
                #expect(ended[1].phase == .timeout, "\(ended[1].phase) \(ended[1].endReason ?? "")\n\(scene.diagnostics())")
                #expect(ended[1].cancelRequested?.contains("VM timeout") == true, "\(ended[1].cancelRequested ?? "-")")
                // 3. The create command's failure is why it stayed pending, until its pending deadline.
                #expect(ended[2].phase == .timeout)
                #expect(
                    ended[2].endReason?.contains("could not be created: exit 3: no capacity left in pool") == true,
                    "\(ended[2].endReason ?? "-")")

                try await scene.waitFor("VMs destroyed", timeout: .seconds(30)) {
                    var states: [VMRecord.State] = []
                    for name in names { if let vm = try await scene.store.vm(name) { states.append(vm.state) } }
                    return states == [.destroyed, .destroyed, .destroyed]
                }
                for name in names.prefix(2) {
                    let record = try #require(try await scene.store.vm(name))
                    #expect(record.create?.output.contains("created \(name)") == true)
                    #expect(record.destroy?.output.contains("destroyed \(name)") == true)
                    let pid = try #require(Self.vmPid(scene.directory, name))
                    #expect(!Self.alive(pid), "the VM's agent \(pid) still runs")
                }
                let failed = try #require(try await scene.store.vm(names[2]))
                #expect(failed.create?.status == 3)
                #expect(failed.destroy?.output.contains("nothing to destroy") == true)
            }
        }
    }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async throws -> [T] {
        var mapped: [T] = []
        for element in self { mapped.append(try await transform(element)) }
        return mapped
    }
}
