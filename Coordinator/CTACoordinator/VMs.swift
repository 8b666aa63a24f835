import CTACore
import CTADefinitions
import Foundation
import Logging
import NIOPosix

// VMs made on the fly: a configuration with `provision` gets a VM per execution. The composer records the VM
// (once, whichever coordinator gets there first), runs the create command, and dispatches the execution to the
// VM's agent when it registers; the timekeeper destroys the VM when the execution ends, or at its VM timeout
// (cancelling what still runs on it first).

extension Coordinator {
    /// What the composer can do for an execution now.
    enum PlanChoice {
        case plan(DispatchPlan)
        case waiting(PendingExplanation)
    }

    /// The plan for an execution on its own VM: the VM is created when it has none yet; the plan is made once the
    /// VM's agent is online.
    func vmPlan(_ record: ExecutionRecord, provision: ProvisionDefinition, now: Date) async throws -> PlanChoice {
        let name = VMRecord.name(for: record.executionID)
        var vm = try await store.vm(name)
        if vm == nil {
            let new = VMRecord(
                execution: record.executionID, createdBy: settings.instance, createdAt: now,
                destroyBy: now.addingTimeInterval(Double(provision.vmTimeoutMs.value) / 1000))
            if try await store.createVM(new) {
                logger.info("creating a VM", metadata: ["cta.execution": "\(record.executionID)", "cta.machine": "\(name)"])
                startCreating(new, provision: provision, record: record)
            }
            vm = try await store.vm(name)
        }
        guard let vm else {
            return .waiting(PendingExplanation(summary: "VM \(name) is not recorded yet", candidates: [], checkedAt: now))
        }
        switch vm.state {
        case .createFailed:
            let why = vm.create?.summary ?? "unknown"
            return .waiting(PendingExplanation(summary: "VM \(name) could not be created: \(why)", candidates: [], checkedAt: now))
        case .destroying, .destroyed, .destroyFailed:
            return .waiting(
                PendingExplanation(summary: "VM \(name) was destroyed before its agent took the execution", candidates: [], checkedAt: now))
        case .creating, .created:
            let machines = try await recentMachines(now: now)
            guard let machine = machines.first(where: { $0.name == name }), machine.isOnline(at: now) else {
                let since = Timestamp(vm.createdAt).rfc3339
                let stage = vm.state == .creating ? "being created" : "created"
                return .waiting(
                    PendingExplanation(
                        summary: "waiting for VM \(name) (\(stage) since \(since)) to register its agent", candidates: [],
                        checkedAt: now))
            }
            return .plan(DispatchPlan(machines: [name], eventIDs: [EventID()]))
        }
    }

    /// Runs the create command off the composer's path; the composer looks again when it ends.
    private func startCreating(_ vm: VMRecord, provision: ProvisionDefinition, record: ExecutionRecord) {
        startCommand(provision.create, named: "create", vm: vm, provision: provision, record: record) { outcome in
            try await self.store.recordVMCreated(vm.name, outcome: outcome)
            self.wakeComposer()
        }
    }

    /// Runs one of a VM's provision commands in a task of its own, logs how it ended, and hands the outcome to
    /// `recorded` (retried while the store is away).
    private func startCommand(
        _ command: String, named what: String, vm: VMRecord, provision: ProvisionDefinition, record: ExecutionRecord,
        recorded: @escaping @Sendable (VMCommandOutcome) async throws -> Void
    ) {
        let environment = Self.provisionEnvironment(vm: vm, record: record, provision: provision)
        Task {
            let outcome = await ProvisionCommand.run(
                command, environment: environment, timeout: .milliseconds(Int64(provision.commandTimeoutMs.value)))
            logger.log(
                level: outcome.succeeded ? .info : .error, "VM \(what) command ended",
                metadata: ["cta.machine": "\(vm.name)", "cta.outcome": "\(outcome.summary)", "cta.durationMs": "\(outcome.durationMs)"])
            _ = try? await retryingStore("record a VM \(what) outcome") { try await recorded(outcome) }
        }
    }

    /// Destroys the VMs whose execution ended; at a VM's timeout, cancels the execution still on it (cause
    /// timeout), and destroys it anyway once the grace period has passed too.
    func sweepVMs(now: Date) async throws {
        for vm in try await store.undestroyedVMs() {
            if vm.state == .destroying, let until = vm.destroyClaimedUntil, until >= now { continue }
            var execution: ExecutionRecord?
            if let id = ExecutionID(vm.executionID) { execution = try await store.execution(id) }
            let ended = execution?.phase.isEnd ?? true
            if let execution, !ended, now >= vm.destroyBy, execution.cancelRequested == nil {
                let reason = "VM timeout of \(Self.milliseconds(vm.destroyBy.timeIntervalSince(vm.createdAt))) ms passed on \(vm._id)"
                logger.info("VM timeout; cancelling its execution", metadata: ["cta.machine": "\(vm._id)", "cta.execution": "\(execution.executionID)"])
                if execution.dispatchedAt == nil {
                    _ = try await cancel(execution.executionID, reason: reason)
                } else if try await store.requestCancel(execution.executionID, reason: reason) {
                    try await sendCancel(execution, cause: .timeout, reason: reason)
                }
                continue
            }
            guard ended || now >= vm.destroyBy.addingTimeInterval(settings.timeoutGrace.timeInterval) else { continue }
            let provision = execution?.provision
            guard let provision, let execution else {
                // Without its execution there is no command to run: recorded, for a person to look at.
                try await store.recordVMDestroyed(
                    vm.name, outcome: VMCommandOutcome(status: nil, output: "its execution is gone", durationMs: 0, timedOut: false), at: now)
                continue
            }
            let commandTime = Double(provision.commandTimeoutMs.value) / 1000
            guard try await store.claimVMDestruction(vm.name, holder: settings.instance, now: now, until: now.addingTimeInterval(commandTime + 30))
            else { continue }
            logger.info("destroying a VM", metadata: ["cta.machine": "\(vm._id)", "cta.execution": "\(vm.executionID)"])
            startCommand(provision.destroy, named: "destroy", vm: vm, provision: provision, record: execution) { outcome in
                try await self.store.recordVMDestroyed(vm.name, outcome: outcome, at: Date())
            }
        }
    }

    /// What the provision commands get besides the coordinator's own environment.
    static func provisionEnvironment(vm: VMRecord, record: ExecutionRecord, provision: ProvisionDefinition) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["CTA_VM_NAME"] = vm._id
        environment["CTA_EXECUTION_ID"] = record.executionID.description
        environment["CTA_SCENARIO"] = record.scenario.id.rawValue
        environment["CTA_VM_TIMEOUT_MS"] = String(provision.vmTimeoutMs.value)
        return environment
    }

    private static func milliseconds(_ interval: TimeInterval) -> Int64 { Int64((interval * 1000).rounded()) }
}

/// Runs one provision command with `/bin/sh -c`, its output (stdout and stderr) into a temporary file, killed at
/// its timeout (SIGTERM, then SIGKILL five seconds later). Children it leaves running (the VM, an agent) keep
/// running: only the command's own exit counts, and they inherit none of the coordinator's descriptors (its
/// broker and database connections) beyond the three standard ones.
enum ProvisionCommand {
    static let outputLimit = 4096

    static func run(_ command: String, environment: [String: String], timeout: Duration) async -> VMCommandOutcome {
        let started = ContinuousClock.now
        func elapsed() -> Int64 {
            let duration = ContinuousClock.now - started
            return duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        }
        let outputPath = NSTemporaryDirectory() + "cta-provision-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let pid: pid_t
        do {
            // posix_spawn may block briefly: on a thread of NIO's pool, never on the cooperative pool.
            pid = try await NIOThreadPool.singleton.runIfActive {
                try spawn(["/bin/sh", "-c", command], environment: environment, output: outputPath)
            }
        } catch {
            return VMCommandOutcome(status: nil, output: "cannot start /bin/sh: \(error)", durationMs: elapsed(), timedOut: false)
        }
        var status: Int32 = 0
        var signalled: (term: Bool, kill: Bool) = (false, false)
        while true {
            // WNOHANG: never blocks.
            if waitpid(pid, &status, WNOHANG) == pid { break }
            let running = ContinuousClock.now - started
            if running >= timeout, !signalled.term {
                kill(pid, SIGTERM)
                signalled.term = true
            }
            if running >= timeout + .seconds(5), !signalled.kill {
                kill(pid, SIGKILL)
                signalled.kill = true
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let data = (try? Data(contentsOf: URL(fileURLWithPath: outputPath))) ?? Data()
        let text = String(decoding: data.suffix(outputLimit), as: UTF8.self)
        return VMCommandOutcome(status: code, output: text, durationMs: elapsed(), timedOut: signalled.term)
    }

    struct SpawnError: Error, CustomStringConvertible {
        var code: Int32
        var description: String { "posix_spawn failed: \(String(cString: strerror(code)))" }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does not export.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFrom: CloseFrom? = {
        // RTLD_DEFAULT (a null handle on glibc): the process's global symbols.
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()

    /// Closes every descriptor above the standard three in the child: with `closefrom` when glibc has it, else
    /// each descriptor open now (`/proc/self/fd`).
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        if let closeFrom {
            _ = closeFrom(&actions, 3)
            return
        }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in open.compactMap(Int32.init) where descriptor > 2 {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
    }

    private static func spawn(_ arguments: [String], environment: [String: String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        closeInheritedDescriptors(&actions)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
        guard code == 0 else { throw SpawnError(code: code) }
        return pid
    }
}
