public import CTAAgent
public import CTACore
import CTAClient
import Foundation
import NIOHTTP1

/// Uploads tests' files over HTTP(S) with `PUT /v1/attachments/{id}`, to the coordinator's API or to a gateway, with
/// the machine's enrollment token. One connection per upload; the whole file is sent as one body.
public struct HTTPAttachmentUploader: AttachmentUploading {
    let transport: HTTPTransport
    let token: String

    /// - Parameters:
    ///   - url: The API's or the gateway's base URL (`https://host:port`).
    ///   - caFile: PEM CA certificates to trust instead of the system's.
    ///   - clientCertificate: PEM certificate and key, for a server that asks for a client certificate.
    public init(
        url: String, token: String, caFile: String?, clientCertificate: (certificate: String, key: String)?,
        requestTimeout: Duration = .seconds(300)
    ) throws {
        guard let endpoint = Endpoint(url) else { throw UploadFailure(permanent: true, "not an http(s) URL: \(url)") }
        do {
            transport = try HTTPTransport(
                endpoint: endpoint,
                configuration: TransportConfiguration(
                    caCertificateFile: caFile, clientCertificate: clientCertificate, requestTimeout: requestTimeout))
        } catch {
            throw UploadFailure(permanent: true, error.message)
        }
        self.token = token
    }

    public func upload(
        _ reference: AttachmentReference, content: [UInt8], execution: ExecutionID, test: TestID, machine: MachineName
    ) async throws(UploadFailure) {
        let query = Query().adding("execution", execution.description).adding("name", reference.name)
            .adding("test", test.rawValue).adding("machine", machine.rawValue)
        let request = HTTPRequest(
            method: .PUT, target: "/v1/attachments/\(reference.id)\(query.text)",
            headers: [
                ("Authorization", "Bearer \(token)"), ("Content-Type", reference.contentType),
                ("X-CTA-SHA256", reference.sha256), ("Accept", "application/json"),
            ],
            body: content)
        let response: HTTPResponse
        do {
            response = try await transport.send(request)
        } catch {
            throw UploadFailure(permanent: false, error.message)
        }
        guard !(200..<300).contains(response.status) else { return }
        let message = "\(response.status) from \(transport.endpoint): \(APIClient.error(from: response).message)"
        // Outages and overload are retried; the server's refusal of this upload is not.
        let retried = response.status == 408 || response.status == 429 || response.status >= 500
        throw UploadFailure(permanent: !retried, message)
    }
}
