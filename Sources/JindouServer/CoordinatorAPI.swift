import Foundation
import Hummingbird
import JindouCoordinator
import JindouModel
import JindouPlacement
import JindouRouting
import JindouTransport
import Logging
import NIOCore
import ServiceLifecycle

/// An error body in OpenAI's shape: `{"error": {"message", "type", "code"}}`.
struct APIErrorBody: Codable {
    struct Detail: Codable {
        let message: String
        let type: String
        let code: String?
    }
    let error: Detail
}

/// The coordinator's HTTP API (docs/api.md).
///
/// - `GET /health`: `{"status": "ok", ...}` once the cluster is up.
/// - `POST /v1/jindou/generate`: a `GenerationRequestBody` in, a `GenerationReport` out.
public enum CoordinatorAPI {
    public static func router(engine: InferenceEngine, pool: WorkerPool?, placement: Placement?) -> Hummingbird.Router<BasicRequestContext> {
        let router = Hummingbird.Router(context: BasicRequestContext.self)
        router.get("health") { _, _ -> Response in
            var body: [String: Any] = ["status": "ok", "model": engine.description.architecture.rawValue]
            if let pool { body["workers"] = await pool.workers.count }
            if let placement { body["placement_version"] = placement.version }
            return jsonResponse(try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))
        }
        router.post("v1/jindou/generate") { request, context -> Response in
            let body: GenerationRequestBody
            do {
                let data = try await request.body.collect(upTo: 64 << 20)
                body = try JSONDecoder().decode(GenerationRequestBody.self, from: Data(buffer: data))
            } catch {
                return errorResponse(.badRequest, type: "invalid_request_error", message: "malformed request body: \(describe(error))")
            }
            do {
                let result = try await engine.generate(body.request)
                let report = GenerationReport(result, requested: body.request.expertsPerToken, description: engine.description)
                return jsonResponse(try JSONEncoder().encode(report))
            } catch let error as EngineError {
                return errorResponse(.badRequest, type: "invalid_request_error", message: error.description)
            } catch let error as ClusterError {
                context.logger.error("generation failed", metadata: ["error": "\(error)"])
                return errorResponse(.serviceUnavailable, type: "cluster_error", message: error.description)
            } catch {
                context.logger.error("generation failed", metadata: ["error": "\(error)"])
                return errorResponse(.internalServerError, type: "server_error", message: "\(error)")
            }
        }
        return router
    }

    static func jsonResponse(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func errorResponse(_ status: HTTPResponse.Status, type: String, message: String, code: String? = nil) -> Response {
        let body = APIErrorBody(error: .init(message: message, type: type, code: code))
        return jsonResponse((try? JSONEncoder().encode(body)) ?? Data(), status: status)
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing field '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        case DecodingError.dataCorrupted(let context):
            context.codingPath.isEmpty ? "not valid JSON" :
                "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        default: "\(error)"
        }
    }

    /// The HTTP application; prints `ready http://HOST:PORT` on stdout once it accepts requests.
    public static func application(
        engine: InferenceEngine, pool: WorkerPool?, placement: Placement?, listen: Endpoint,
        services: [any Service] = [], logger: Logger
    ) -> some ApplicationProtocol {
        Application(
            router: router(engine: engine, pool: pool, placement: placement),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "jindou"),
            services: services,
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? listen.port
                announceReady("http://\(Endpoint(host: listen.host, port: port))")
            },
            logger: logger)
    }
}

/// Prints the command contract's `ready <url>` line on stdout, flushed.
public func announceReady(_ url: String) {
    FileHandle.standardOutput.write(Data("ready \(url)\n".utf8))
}
