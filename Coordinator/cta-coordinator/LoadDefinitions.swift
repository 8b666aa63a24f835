import ArgumentParser
import CTACoordinator
import Foundation
import CTADefinitions

/// Reads definition files; on problems prints every one of them (`file:line: key: message`) and exits 65.
func loadDefinitions(_ path: String) throws -> DefinitionSet {
    do {
        return try DefinitionLoader.load(path: path)
    } catch {
        FileHandle.standardError.write(Data("\(error)\n".utf8))
        throw ExitCode(65)  // EX_DATAERR
    }
}
