import Foundation
import JindouModel
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A client of the coordinator's HTTP API.
struct CoordinatorClient {
    let base: URL

    init(_ url: String) throws {
        let text = url.contains("://") ? url : "http://\(url)"
        guard let base = URL(string: text), base.host != nil else { throw CLIError(message: "bad coordinator URL '\(url)'") }
        self.base = base
    }

    func generate(_ body: GenerationRequestBody) async throws -> GenerationReport {
        let data = try await post("v1/jindou/generate", body: try JSONEncoder().encode(body))
        return try JSONDecoder().decode(GenerationReport.self, from: data)
    }

    /// POSTs JSON and returns the body of a 2xx answer; other answers become one-line errors.
    func post(_ path: String, body: Data) async throws -> Data {
        var request = URLRequest(url: base.appendingPathComponent(path))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = body
        request.timeoutInterval = 3600
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw CLIError(message: "cannot reach the coordinator at \(base.absoluteString): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            struct ErrorBody: Decodable {
                struct Detail: Decodable { let message: String }
                let error: Detail
            }
            let message = (try? JSONDecoder().decode(ErrorBody.self, from: data))?.error.message
                ?? String(decoding: data, as: UTF8.self)
            throw CLIError(message: "coordinator answered \(status): \(message)")
        }
        return data
    }
}
