import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A client of the coordinator's HTTP API, for `jindouctl` and for workers joining.
public struct AdminClient: Sendable {
    public let base: URL
    /// The cluster secret, sent as `Authorization: Bearer …` when set.
    public let token: String?
    public let timeoutSeconds: Double

    public init(_ url: String, token: String? = nil, timeoutSeconds: Double = 3600) throws {
        let text = url.contains("://") ? url : "http://\(url)"
        guard let base = URL(string: text), base.host != nil else { throw AdminClientError.badURL(url) }
        self.base = base
        self.token = token
        self.timeoutSeconds = timeoutSeconds
    }

    public func get<Response: Decodable>(_ path: String, query: [String: String] = [:], as type: Response.Type) async throws -> Response {
        try JSONDecoder().decode(Response.self, from: try await send("GET", path, query: query, body: nil))
    }

    public func post<Body: Encodable, Response: Decodable>(_ path: String, _ body: Body, as type: Response.Type) async throws -> Response {
        try JSONDecoder().decode(Response.self, from: try await send("POST", path, body: try JSONEncoder().encode(body)))
    }

    /// Sends a request; returns the body of a 2xx answer, else throws `AdminClientError`.
    public func send(_ method: String, _ path: String, query: [String: String] = [:], body: Data?) async throws -> Data {
        var components = URLComponents(url: base.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.queryItems = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) } }
        var request = URLRequest(url: components.url!)
        request.httpMethod = method
        request.timeoutInterval = timeoutSeconds
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response): (Data, URLResponse)
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw AdminClientError.unreachable(url: base.absoluteString, reason: error.localizedDescription)
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let message = (try? JSONDecoder().decode(APIError.self, from: data))?.error.message ?? String(decoding: data, as: UTF8.self)
            throw AdminClientError.status(code: status, message: message)
        }
        return data
    }
}

public enum AdminClientError: Error, Equatable, CustomStringConvertible {
    case badURL(String)
    case unreachable(url: String, reason: String)
    case status(code: Int, message: String)

    public var description: String {
        switch self {
        case .badURL(let url): "bad coordinator URL '\(url)'"
        case .unreachable(let url, let reason): "cannot reach the coordinator at \(url): \(reason)"
        case .status(let code, let message): "coordinator answered \(code): \(message)"
        }
    }
}
