import CTAYAML

/// Everything a command needs to talk to the API: the resolved settings, the endpoint and a client.
public struct Session: Sendable {
    public let settings: ClientSettings
    public let endpoint: Endpoint
    public let configuration: TransportConfiguration
    public let client: APIClient

    /// Resolves the settings (flags, environment, configuration file) and makes a client.
    ///
    /// - Parameter requireToken: Whether a missing token is an error (every command but `login`).
    public static func open(
        flags: ClientSettings.Flags, environment: [String: String], requestTimeout: Duration = .seconds(60),
        requireToken: Bool = true
    ) throws(ClientError) -> Session {
        var file: ConfigFile?
        if let path = ClientSettings.configPath(environment: environment) { file = try ConfigFile.read(path: path) }
        let settings = ClientSettings.resolve(flags: flags, environment: environment, file: file)
        return try open(settings: settings, requestTimeout: requestTimeout, requireToken: requireToken)
    }

    public static func open(
        settings: ClientSettings, requestTimeout: Duration = .seconds(60), requireToken: Bool = true
    ) throws(ClientError) -> Session {
        guard let endpoint = Endpoint(settings.url) else {
            throw .usage("\(settings.url) is not an http(s) URL of the CTA API (from \(settings.sources["url"] ?? "?"))")
        }
        if requireToken && settings.token == nil {
            throw .usage("not logged in: run cta login, or set CTA_TOKEN, or pass --token")
        }
        let configuration = TransportConfiguration(
            caCertificateFile: settings.caCertificateFile, requestTimeout: requestTimeout)
        let transport = try HTTPTransport(endpoint: endpoint, configuration: configuration)
        return Session(
            settings: settings, endpoint: endpoint, configuration: configuration,
            client: APIClient(transport: transport, token: settings.token))
    }
}


/// Durations on the command line: `90s`, `10m`, `1h30m`, `250ms` (a unit is required).
public enum DurationArgument {
    public static func parse(_ text: String) -> Duration? { DurationText.parse(text) }
}
