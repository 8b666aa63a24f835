import CTAAgentCore
import CTACore
import Foundation

// The inputs of a test: git checkouts and files from the attachment store, fetched before the first stage.

extension TestRun {
    /// Fetches one input; a failure ends the test (see ``TestExecutor``).
    func fetch(_ input: TestInput, number: Int) async {
        switch input {
        case .git(let git): await fetchGit(git, number: number)
        case .file(let file): await fetchFile(file, number: number)
        }
    }

    // MARK: git

    private func fetchGit(_ input: GitInput, number: Int) async {
        let label = "input \(number) (git \(maskCredentials(input.url)))"
        let stageName = "input-git-\(number)"
        func fail(_ summary: String) {
            verdict.end(.inconclusive, "\(label) failed: \(summary)")
        }
        if input.url.hasPrefix("-") || (input.ref?.hasPrefix("-") ?? false) {
            origin = .exitCode(stage: stageName, exitCode: -1, signal: nil)
            return fail("a URL or ref must not start with '-'")
        }
        for relative in [input.path, input.into].compactMap({ $0 }) where !FileOperations.isSafeRelativePath(relative) {
            origin = .exitCode(stage: stageName, exitCode: -1, signal: nil)
            return fail("\(relative) is not a relative path inside the repository or work directory")
        }
        let checkout = assignment.directory + "/inputs/git-\(number)"
        let git = shellQuote(executor.configuration.git)
        let directory = shellQuote(checkout)
        let url = shellQuote(input.url)
        let ref = shellQuote(input.ref ?? "HEAD")
        let command = [
            "\(git) init -q \(directory)",
            "\(git) -C \(directory) fetch -q --depth 1 \(url) \(ref)",
            "\(git) -C \(directory) checkout -q FETCH_HEAD",
        ].joined(separator: " && ")
        let stage = Stage(
            name: stageName, run: command, env: ["GIT_TERMINAL_PROMPT": "0"],
            timeoutMs: Milliseconds(executor.configuration.gitInputTimeout))
        let (outcome, stageStarted) = await runStage(stage)
        if let stop = stoppedBy(outcome, stage: stage, started: stageStarted) {
            switch stop {
            case .external(let cause): verdict.end(.inconclusive, cause.message)
            case .deadline: verdict.end(.failed, "test timed out after \(assignment.test.timeoutMs?.value ?? 0) ms")
            }
            return
        }
        guard outcome.succeeded else {
            let complaint = await onDedicatedThread("cta-test-input") { gitComplaint(in: outcome.log.path) }
            let summary: String
            if outcome.timedOut {
                summary = "timed out after \(Milliseconds(executor.configuration.gitInputTimeout).value) ms"
            } else if let failure = outcome.failure {
                summary = failure.message
            } else if let complaint {
                summary = "\(maskCredentials(complaint)) (\(outcome.termination))"
            } else {
                summary = outcome.summary
            }
            return fail(summary)
        }
        let work = assignment.workDirectory
        let moved = await onDedicatedThread("cta-test-input") { () -> FileProblem? in
            defer { try? FileOperations.removeTree(checkout) }
            do throws(FileProblem) {
                try placeCheckout(checkout, path: input.path, into: FileOperations.join(work, input.into))
                return nil
            } catch {
                return error
            }
        }
        if let moved { fail(moved.description) }
    }

    // MARK: file

    private func fetchFile(_ input: FileInput, number: Int) async {
        let reference = input.attachment
        let label = "input \(number) (file \(reference.name))"
        let store = executor.attachments
        let destination = FileOperations.join(assignment.workDirectory, input.into)
        let safe = FileOperations.isSafeRelativePath(input.into)
        let problem = await onDedicatedThread("cta-test-input") { () -> String? in
            guard safe else { return "\(input.into) is not a relative path inside the work directory" }
            guard store.contains(reference.id) else {
                return "file inputs need the attachment service; attachment \(reference.id) is not on this machine"
            }
            do throws(FileProblem) {
                if let info = FileOperations.status(destination), FileOperations.isDirectory(info) {
                    return "\(input.into) is a directory"
                }
                try FileOperations.makeDirectory((destination as NSString).deletingLastPathComponent)
                let copied = try FileOperations.copy(store.path(for: reference.id), to: destination)
                guard copied.size == reference.size, copied.sha256 == reference.sha256.lowercased() else {
                    return "attachment \(reference.id) does not match its size and SHA-256"
                }
                return nil
            } catch {
                return error.description
            }
        }
        if let problem {
            origin = .exitCode(stage: "input-file-\(number)", exitCode: -1, signal: nil)
            verdict.end(.inconclusive, "\(label) failed: \(problem)")
        }
    }
}

/// Moves a finished checkout (or the directory `path` inside it) to `destination`. The `.git` directory comes
/// along when the whole checkout moves. A `path` through a symbolic link is refused, so nothing outside the
/// checkout can be moved.
private func placeCheckout(_ checkout: String, path: String?, into destination: String) throws(FileProblem) {
    var source = checkout
    for component in (path ?? "").split(separator: "/") where component != "." {
        source += "/" + component
        guard let info = FileOperations.status(source) else {
            throw FileProblem("\(path ?? "") does not exist in the repository")
        }
        if FileOperations.isSymlink(info) { throw FileProblem("\(path ?? "") goes through a symbolic link") }
    }
    guard let info = FileOperations.status(source) else { throw FileProblem("the checkout is missing") }
    if FileOperations.isDirectory(info) {
        // The directory's contents go into the destination, which may exist already (the work directory itself).
        try FileOperations.makeDirectory(destination)
        for name in try FileOperations.entries(of: source) {
            try FileOperations.move(source + "/" + name, to: destination + "/" + name, shownAs: name)
        }
    } else {
        // A single file: into an existing directory under its own name, else to the destination path.
        var target = destination
        if let existing = FileOperations.status(destination), FileOperations.isDirectory(existing) {
            target = destination + "/" + (source as NSString).lastPathComponent
        }
        try FileOperations.move(source, to: target, shownAs: (target as NSString).lastPathComponent)
    }
}

/// The last `fatal:` or `error:` line git wrote to a stage log.
private func gitComplaint(in logPath: String) -> String? {
    guard let bytes = FileOperations.read(logPath) else { return nil }
    let lines = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
    return lines.last { $0.hasPrefix("fatal:") || $0.hasPrefix("error:") }.map { String($0.prefix(500)) }
}

/// A word quoted for `/bin/sh`: inside single quotes, with each `'` written as `'\''`.
func shellQuote(_ word: String) -> String {
    "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// `text` with the password of any `scheme://user:password@host` replaced by `***`.
func maskCredentials(_ text: String) -> String {
    guard let scheme = text.range(of: "://") else { return text }
    let rest = text[scheme.upperBound...]
    let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
    let authority = rest[..<authorityEnd]
    guard let at = authority.lastIndex(of: "@") else { return text }
    let userInfo = authority[..<at]
    let user = userInfo.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
    return String(text[..<scheme.upperBound]) + user + ":***" + String(text[at...])
}
