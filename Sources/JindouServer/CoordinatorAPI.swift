import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import JindouAdmin
import JindouCoordinator
import JindouModel
import JindouPlacement
import JindouRouting
import JindouTransport
import JindouWire
import JindouServing
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// The coordinator's HTTP API: generation and the admin API (docs/admin-api.md).
public enum CoordinatorAPI {
    public static func router(serving: ServingContext, controller: ClusterController?, secret: ClusterSecret?,
                              metrics: PrometheusCollectorRegistry?, modelFiles: ModelFileServer? = nil) -> Hummingbird.Router<APIRequestContext> {
        let engine = serving.engine
        let router = Hummingbird.Router(context: APIRequestContext.self)
        router.add(middleware: RequestIdentity())
        router.add(middleware: RequestClient())
        router.add(middleware: RequestMetrics())
        router.add(middleware: MethodNotAllowed(openAPIDocument: OpenAPIDocument.json))
        if let secret { router.add(middleware: BearerAuthentication(secret: secret)) }
        OpenAIAPI.register(on: router, serving: serving)
        if let metrics { router.get("metrics") { _, _ -> Response in metricsResponse(metrics) } }

        // Liveness: the process serves HTTP. The cluster's state is reported, not judged.
        router.get("health") { _, _ -> Response in
            var body: [String: Any] = ["status": "ok", "model": engine.description.architecture.rawValue]
            let readiness = await serving.readiness.report()
            body["ready"] = readiness.ready
            if let controller {
                let status = await controller.status()
                body["placement_version"] = status.placementVersion
                body["workers"] = status.workers.filter { $0.state == "ready" }.count
                body["served_experts"] = status.servedExperts
                body["total_experts"] = status.totalExperts
            }
            return jsonResponse(try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))
        }

        let document = Data(OpenAPIDocument.served(modelName: serving.modelName, vocabularySize: engine.description.vocabularySize,
                                                   maximumModelLength: serving.maximumModelLength,
                                                   expertCount: engine.description.router.expertCount).utf8)
        router.get("openapi.json") { _, _ -> Response in jsonResponse(document) }

        // Readiness: 200 only when every expert of the active placement is served by a live worker.
        router.get("ready") { _, _ -> Response in
            let readiness = await serving.readiness.report()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return jsonResponse(try encoder.encode(readiness), status: readiness.ready ? .ok : .serviceUnavailable)
        }

        router.post("v1/jindou/generate") { request, context -> Response in
            await respond(context) {
                let body = try await decode(GenerationRequestBody.self, request, limit: serving.maximumRequestBytes)
                return try await generate(body.request, serving: serving)
            }
        }

        modelFiles?.register(on: router)

        guard let controller else { return router }
        let admin = router.group("v1/admin")
        admin.post("workers/join") { request, context -> Response in
            await respond(context) { try await controller.join(try await decode(JoinRequest.self, request)) }
        }
        admin.post("workers/heartbeat") { request, context -> Response in
            await respond(context) {
                try await controller.heartbeat(try await decode(HeartbeatRequest.self, request))
                return ["ok": true]
            }
        }
        admin.get("status") { _, context -> Response in
            await respond(context) { await controller.status() }
        }
        admin.get("shards") { request, context -> Response in
            await respond(context) {
                let layer = try request.uri.queryParameters.get("layer").map { text -> Int in
                    guard let layer = Int(text) else { throw APIFailure.badRequest("layer must be an integer, got '\(text)'") }
                    return layer
                }
                return await controller.shards(layer: layer)
            }
        }
        admin.get("load") { _, context -> Response in
            await respond(context) { await controller.loadReport() }
        }
        admin.get("verify") { _, context -> Response in
            await respond(context) { await controller.verify() }
        }
        admin.post("scale") { request, context -> Response in
            await respond(context) { try await controller.scale(replicas: try await decode(ScaleRequest.self, request).replicas) }
        }
        admin.post("drain") { request, context -> Response in
            await respond(context) { try await controller.drain(try await decode(DrainRequest.self, request).worker) }
        }
        admin.post("rebalance") { request, context -> Response in
            await respond(context) {
                let body = try await decode(RebalanceRequest.self, request)
                return try await controller.rebalance(dryRun: body.dryRun, extraSlots: body.extraSlots, objective: body.objective)
            }
        }
        return router
    }

    /// Runs a token-id generation through the batch scheduler (so it shares decode steps
    /// with every other request) and reports it like `jindouctl generate --json`.
    static func generate(_ request: GenerationRequest, serving: ServingContext) async throws -> GenerationReport {
        let start = ContinuousClock.now
        var firstToken: ContinuousClock.Instant?
        var tokens: [Int] = []
        var logits: [Float]?
        var finish = FinishReason.length
        var speculation: SpeculationStatistics?
        try await serving.readiness.admit()
        var request = request
        request.clientKey = RequestClient.key
        let events = try await serving.scheduler.submit(request)
        for try await event in events {
            switch event {
            case .promptLogits(let l): logits = l
            case .speculation(let statistics): speculation = statistics
            case .token(let t):
                if firstToken == nil { firstToken = .now }
                tokens.append(t)
            case .finished(let reason, _, _): finish = reason
            case .logprobs, .cachedPrompt: break
            }
        }
        let end = ContinuousClock.now
        let result = GenerationResult(
            tokenIDs: tokens, finishReason: finish, lastPromptLogits: logits, promptTokenCount: request.promptTokenIDs.count,
            prefillSeconds: ((firstToken ?? end) - start).seconds, decodeSeconds: (end - (firstToken ?? end)).seconds,
            speculation: speculation)
        return GenerationReport(result, requested: request.expertsPerToken, description: serving.engine.description)
    }

    /// Errors a handler maps to a status.
    enum APIFailure: Error {
        case badRequest(String)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ request: Request, limit: Int = 1 << 20) async throws -> T {
        let data: ByteBuffer
        do {
            data = try await RequestBodyLimit.collect(request, limit: limit)
        } catch let error as RequestBodyLimit.TooLarge {
            throw error
        } catch {
            throw APIFailure.badRequest("request body unreadable: \(error)")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: data))
        } catch {
            throw APIFailure.badRequest("malformed request body: \(describe(error))")
        }
    }

    /// Runs a handler and turns its result or error into a JSON response.
    static func respond<T: Encodable>(_ context: APIRequestContext, _ body: () async throws -> T) async -> Response {
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return jsonResponse(try encoder.encode(try await body()))
        } catch APIFailure.badRequest(let message) {
            return errorResponse(.badRequest, type: "invalid_request_error", message: message)
        } catch let error as RequestBodyLimit.TooLarge {
            return errorResponse(.contentTooLarge, type: "invalid_request_error", message: error.description, code: "request_too_large")
        } catch let error as ReadinessGate.NotReady {
            return errorResponse(.serviceUnavailable, type: "server_error", message: error.description, code: "not_ready")
        } catch let error as EngineError {
            return errorResponse(.badRequest, type: "invalid_request_error", message: error.description)
        } catch let error as SchedulerError {
            switch error {
            case .busy, .clientBusy: return errorResponse(.tooManyRequests, type: "rate_limit_error", message: error.description)
            case .tooLarge: return errorResponse(.badRequest, type: "invalid_request_error", message: error.description)
            case .shuttingDown: return errorResponse(.serviceUnavailable, type: "server_error", message: error.description)
            }
        } catch let error as ClusterError {
            switch error {
            case .unknownWorker:
                return errorResponse(.notFound, type: "not_found", message: error.description)
            case .workerRefused:
                context.logger.warning("refused", metadata: ["error": "\(error)"])
                return errorResponse(.conflict, type: "conflict", message: error.description)
            case .rejected:
                return errorResponse(.badRequest, type: "invalid_request_error", message: error.description)
            case .conflict:
                return errorResponse(.conflict, type: "conflict", message: error.description)
            default:
                context.logger.error("request failed", metadata: ["error": "\(error)"])
                return errorResponse(.serviceUnavailable, type: "cluster_error", message: error.description)
            }
        } catch let error as PlacementError {
            return errorResponse(.conflict, type: "placement_error", message: error.description)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)"])
            return errorResponse(.internalServerError, type: "server_error", message: "\(error)")
        }
    }

    /// `GET /metrics`: the registry in Prometheus's text format.
    static func metricsResponse(_ metrics: PrometheusCollectorRegistry) -> Response {
        var buffer: [UInt8] = []
        metrics.emit(into: &buffer)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: buffer)))
    }

    static func jsonResponse(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func errorResponse(_ status: HTTPResponse.Status, type: String, message: String, code: String? = nil) -> Response {
        jsonResponse((try? JSONEncoder().encode(APIError(message: message, type: type, code: code))) ?? Data(), status: status)
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing field '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        case DecodingError.dataCorrupted(let context):
            // Foundation says "The given data was not valid JSON." for syntax errors, and names
            // the number for one that fits no field type (e.g. 2257895335.0 for an Int).
            context.codingPath.isEmpty ? "not valid JSON: \(context.underlyingError.map { "\($0)" } ?? context.debugDescription)" :
                "field '\(context.codingPath.map(\.stringValue).joined(separator: "."))': \(context.debugDescription)"
        default: "\(error)"
        }
    }

    /// The HTTP application; prints `ready http(s)://HOST:PORT` on stdout once it accepts
    /// requests — or, with `waitReady`, only once `/ready` answers 200 (every expert served).
    /// With `tls`, it is HTTPS and every client must present a certificate the cluster CA
    /// signed (mutual TLS).
    public static func application(
        serving: ServingContext, controller: ClusterController?, secret: ClusterSecret?, tls: NodeTLS? = nil,
        metrics: PrometheusCollectorRegistry? = nil, listen: Endpoint, services: [any Service] = [], waitReady: Bool = false,
        limits: ConnectionLimits = .init(), modelFiles: ModelFileServer? = nil, logger: Logger
    ) throws -> some ApplicationProtocol {
        let scheme = tls == nil ? "http" : "https"
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: limits.idleTimeout))
        return Application(
            router: router(serving: serving, controller: controller, secret: secret, metrics: metrics, modelFiles: modelFiles),
            server: try tls.map { try .tls(http1, tlsConfiguration: $0.serverConfiguration()) } ?? http1,
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "jindou",
                                 availableConnectionsDelegate: limits.maximumConnections.map { MaximumAvailableConnections($0, logger: logger) }),
            services: services,
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? listen.port
                let url = "\(scheme)://\(Endpoint(host: listen.host, port: port))"
                guard waitReady else { return announceReady(url) }
                logger.info("serving HTTP; waiting for every expert to be served before announcing ready", metadata: ["url": "\(url)"])
                Task {
                    try await serving.readiness.waitUntilReady()
                    announceReady(url)
                }
            },
            logger: logger)
    }
}

/// Requires `Authorization: Bearer <cluster secret>` on every route but `/health`, `/ready` and `/openapi.json`
/// (load balancers and orchestrators probe them);
/// refusals are logged with the peer's address and never reach a handler.
/// Request context that remembers the peer's address (for logging refusals).
public struct APIRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

struct BearerAuthentication<Context: RemoteAddressRequestContext>: RouterMiddleware {
    let secret: ClusterSecret

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Anthropic's clients send the key as x-api-key (ANTHROPIC_API_KEY), or as a bearer token.
        let apiKey = request.headers[HTTPField.Name("x-api-key")!].map { "Bearer " + $0 }
        if ["/health", "/ready", "/openapi.json"].contains(request.uri.path) || secret.acceptsBearer(request.headers[.authorization])
            || secret.acceptsBearer(apiKey) {
            return try await next(request, context)
        }
        context.logger.warning("refused unauthenticated request", metadata: [
            "path": "\(request.uri.path)", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "unknown")",
        ])
        return CoordinatorAPI.errorResponse(.unauthorized, type: "authentication_error",
                                            message: "missing or wrong cluster secret (Authorization: Bearer …)")
    }
}

/// `x-request-id`: the client's (up to 128 visible ASCII characters), or a new one, put in the
/// request's log metadata (`request_id`) and echoed on the response, so a request can be
/// followed from a load balancer through the coordinator's logs.
struct RequestIdentity<Context: RequestContext>: RouterMiddleware {
    static var header: HTTPField.Name { HTTPField.Name("x-request-id")! }

    static func identity(_ given: String?) -> String {
        if let given, !given.isEmpty, given.utf8.count <= 128, given.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) { return given }
        return UUID().uuidString.lowercased()
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = Self.identity(request.headers[Self.header])
        var context = context
        context.logger[metadataKey: "request_id"] = "\(id)"
        var response = try await next(request, context)
        response.headers[Self.header] = id
        return response
    }
}

/// Limits against slow and greedy clients at the HTTP edge.
public struct ConnectionLimits: Sendable {
    /// A connection with no request in progress for this long is closed — also one whose
    /// request head never completes (a slow-header client): `--idle-timeout`.
    public var idleTimeout: TimeAmount?
    /// Connections served at once; more wait in the listen backlog (`--max-connections`).
    public var maximumConnections: Int?

    public init(idleTimeout: TimeAmount? = .seconds(60), maximumConnections: Int? = 4096) {
        self.idleTimeout = idleTimeout
        self.maximumConnections = maximumConnections
    }
}

/// Who sent the request being handled: its peer's IP address, as a task-local value the
/// generation paths copy into `GenerationRequest.clientKey` (per-client queue limits).
public struct RequestClient: RouterMiddleware {
    public typealias Context = APIRequestContext
    @TaskLocal public static var key: String?

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await Self.$key.withValue(context.remoteAddress?.ipAddress) { try await next(request, context) }
    }
}

/// Counts requests per route and status (`jindou_requests_total`).
struct RequestMetrics<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await next(request, context)
        Counter(label: "jindou_requests_total",
                dimensions: [("path", request.uri.path), ("status", String(response.status.code))]).increment()
        return response
    }
}

/// Runs the batch scheduler's step loop as a service.
public struct SchedulerService: Service {
    public let scheduler: BatchScheduler
    public init(_ scheduler: BatchScheduler) { self.scheduler = scheduler }
    public func run() async throws {
        await withTaskCancellationOrGracefulShutdownHandler {
            await scheduler.run()
        } onCancelOrGracefulShutdown: {
            Task { await scheduler.stop() }
        }
    }
}

/// Prints the command contract's `ready <url>` line on stdout, flushed.
public func announceReady(_ url: String) {
    FileHandle.standardOutput.write(Data("ready \(url)\n".utf8))
}

/// 405 Method Not Allowed, with `Allow`, for a method the API does not define on a path it
/// does (instead of the router's 404): the routes come from the served OpenAPI document, so
/// they cannot drift from it. Handlers' own 404s (unknown worker, unknown model) pass through.
struct MethodNotAllowed<Context: RequestContext>: RouterMiddleware {
    /// Path templates split into segments (`{name}` matches any one segment) and their methods.
    let routes: [(segments: [Substring], methods: [String])]

    init(openAPIDocument: String) {
        let document = (try? JSONSerialization.jsonObject(with: Data(openAPIDocument.utf8))) as? [String: Any]
        let paths = document?["paths"] as? [String: [String: Any]] ?? [:]
        routes = paths.map { path, operations in
            (path.split(separator: "/"), operations.keys.map { $0.uppercased() }.sorted())
        }
    }

    func allowed(_ path: String) -> [String]? {
        let segments = path.split(separator: "/")
        return routes.first { route in
            route.segments.count == segments.count
                && zip(route.segments, segments).allSatisfy { template, segment in template.hasPrefix("{") || template == segment }
        }?.methods
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            guard let methods = allowed(request.uri.path), !methods.contains(request.method.rawValue) else { throw error }
            var response = CoordinatorAPI.errorResponse(.methodNotAllowed, type: "invalid_request_error",
                                                        message: "\(request.method.rawValue) is not allowed on \(request.uri.path); use \(methods.joined(separator: ", "))")
            response.headers[HTTPField.Name("Allow")!] = methods.joined(separator: ", ")
            return response
        }
    }
}
