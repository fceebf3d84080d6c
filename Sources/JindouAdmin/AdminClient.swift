import AsyncHTTPClient
import Foundation
import JindouTransport
import NIOCore
import NIOHTTP1
import Synchronization

/// A client of the coordinator's HTTP API, for `jindouctl` and for workers joining.
/// `https://` URLs use mutual TLS with the node certificate in `tls`.
public struct AdminClient: Sendable {
    public let base: URL
    /// The cluster secret, sent as `Authorization: Bearer …` when set.
    public let token: String?
    public let timeoutSeconds: Double
    public let tls: NodeTLS?

    public init(_ url: String, token: String? = nil, timeoutSeconds: Double = 3600, tls: NodeTLS? = nil) throws {
        let text = url.contains("://") ? url : (tls == nil ? "http://\(url)" : "https://\(url)")
        guard let base = URL(string: text), base.host != nil else { throw AdminClientError.badURL(url) }
        self.base = base
        self.token = token
        self.timeoutSeconds = timeoutSeconds
        self.tls = tls
    }

    public func get<Response: Decodable>(_ path: String, query: [String: String] = [:], as type: Response.Type) async throws -> Response {
        try JSONDecoder().decode(Response.self, from: try await send("GET", path, query: query, body: nil))
    }

    public func post<Body: Encodable, Response: Decodable>(_ path: String, _ body: Body, as type: Response.Type) async throws -> Response {
        try JSONDecoder().decode(Response.self, from: try await send("POST", path, body: try JSONEncoder().encode(body)))
    }

    /// One HTTP client per TLS identity, for the life of the process (AsyncHTTPClient
    /// clients must be shut down before they are released; these never are).
    private static let clients = Mutex<[NodeTLS: HTTPClient]>([:])

    static func httpClient(_ tls: NodeTLS?) throws -> HTTPClient {
        guard let tls else { return HTTPClient.shared }
        return try clients.withLock { clients in
            if let client = clients[tls] { return client }
            let client = HTTPClient(eventLoopGroupProvider: .singleton,
                                    configuration: .init(tlsConfiguration: try tls.clientConfiguration()))
            clients[tls] = client
            return client
        }
    }

    /// POSTs JSON and yields each server-sent event's `data:` payload until `[DONE]`.
    public func events(_ path: String, body: Data) -> AsyncThrowingStream<Data, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var request = HTTPClientRequest(url: base.appendingPathComponent(path).absoluteString)
                    request.method = .POST
                    request.body = .bytes(ByteBuffer(bytes: body))
                    request.headers.add(name: "Content-Type", value: "application/json")
                    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
                    let response: HTTPClientResponse
                    do {
                        response = try await Self.httpClient(tls).execute(request, timeout: .milliseconds(Int64(timeoutSeconds * 1000)))
                    } catch {
                        throw AdminClientError.unreachable(url: base.absoluteString, reason: "\(error)")
                    }
                    guard (200..<300).contains(Int(response.status.code)) else {
                        let data = Data((try await response.body.collect(upTo: 1 << 20)).readableBytesView)
                        let message = (try? JSONDecoder().decode(APIError.self, from: data))?.error.message ?? String(decoding: data, as: UTF8.self)
                        throw AdminClientError.status(code: Int(response.status.code), message: message)
                    }
                    var pending = Data()
                    for try await chunk in response.body {
                        pending.append(contentsOf: chunk.readableBytesView)
                        while let range = pending.range(of: Data("\n\n".utf8)) {
                            let event = pending[pending.startIndex..<range.lowerBound]
                            pending.removeSubrange(pending.startIndex..<range.upperBound)
                            for line in event.split(separator: UInt8(ascii: "\n")) where line.starts(with: Data("data: ".utf8)) {
                                let payload = Data(line.dropFirst(6))
                                if payload == Data("[DONE]".utf8) {
                                    continuation.finish()
                                    return
                                }
                                continuation.yield(payload)
                            }
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Sends a request; returns the body of a 2xx answer, else throws `AdminClientError`.
    public func send(_ method: String, _ path: String, query: [String: String] = [:], body: Data?) async throws -> Data {
        try await exchange(method, path, query: query, body: body).data
    }

    /// Like `send`, with the response's headers (lowercased names).
    public func exchange(_ method: String, _ path: String, query: [String: String] = [:], body: Data?) async throws -> (data: Data, headers: [String: String]) {
        var components = URLComponents(url: base.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.queryItems = query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: $0.value) } }
        var request = HTTPClientRequest(url: components.url!.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        if let body {
            request.body = .bytes(ByteBuffer(bytes: body))
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let status: Int
        let data: Data
        var headers: [String: String] = [:]
        do {
            let response = try await Self.httpClient(tls).execute(request, timeout: .milliseconds(Int64(timeoutSeconds * 1000)))
            status = Int(response.status.code)
            for header in response.headers { headers[header.name.lowercased()] = header.value }
            let buffer = try await response.body.collect(upTo: 512 << 20)
            data = Data(buffer.readableBytesView)
        } catch {
            throw AdminClientError.unreachable(url: base.absoluteString, reason: "\(error)")
        }
        guard (200..<300).contains(status) else {
            let message = (try? JSONDecoder().decode(APIError.self, from: data))?.error.message ?? String(decoding: data, as: UTF8.self)
            throw AdminClientError.status(code: status, message: message)
        }
        return (data, headers)
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
