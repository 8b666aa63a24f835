import ArgumentParser
import CTACoordinator

/// Reads definition files, reporting every problem with its file, line and key.
func loadDefinitions(_ path: String) throws -> DefinitionSet {
    throw ValidationError("definition files are not readable yet")
}
