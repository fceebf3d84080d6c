import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import JindouTransport
import JindouWire
import JindouWorker
import Logging
import NIOCore
import Prometheus

/// A worker's HTTP port (`jindoud worker --http ADDR`), for orchestrators and Prometheus:
/// `GET /health` (liveness: the process serves), `GET /ready` (200 once the experts it was
/// given are mapped, no shard update is loading and, with --join, the coordinator accepted its
/// last heartbeat; else 503 with the reason) and `GET /metrics` (behind the cluster secret when
/// there is one). A worker with a local checkpoint also serves `GET /v1/node/manifest` and
/// `/v1/node/files/NAME` (like the coordinator, behind the secret), so workers without a copy
/// can fetch their experts from it (`--fetch-from`). Frames never travel here: the node port
/// stays the data plane.
public enum WorkerHTTP {
    public static func router(state: WorkerState, secret: ClusterSecret?, metrics: PrometheusCollectorRegistry?,
                              modelFiles: ModelFileServer? = nil) -> Hummingbird.Router<APIRequestContext> {
        let router = Hummingbird.Router(context: APIRequestContext.self)
        router.add(middleware: RequestIdentity())
        if let secret { router.add(middleware: BearerAuthentication(secret: secret)) }
        router.get("health") { _, _ -> Response in
            CoordinatorAPI.jsonResponse(try JSONSerialization.data(withJSONObject: ["status": "ok", "name": state.name], options: [.sortedKeys]))
        }
        router.get("ready") { _, _ -> Response in
            let readiness = state.readiness()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return CoordinatorAPI.jsonResponse(try encoder.encode(readiness), status: readiness.ready ? .ok : .serviceUnavailable)
        }
        if let metrics { router.get("metrics") { _, _ -> Response in CoordinatorAPI.metricsResponse(metrics) } }
        // A worker with a local copy can be what peers without one fetch from (--fetch-from).
        modelFiles?.register(on: router)
        return router
    }

    /// The HTTP application; logs its address once it accepts requests.
    public static func application(state: WorkerState, secret: ClusterSecret?, tls: NodeTLS?, metrics: PrometheusCollectorRegistry?,
                                   modelFiles: ModelFileServer? = nil, listen: Endpoint, logger: Logger) throws -> some ApplicationProtocol {
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(60)))
        let scheme = tls == nil ? "http" : "https"
        return Application(
            router: router(state: state, secret: secret, metrics: metrics, modelFiles: modelFiles),
            server: try tls.map { try .tls(http1, tlsConfiguration: $0.serverConfiguration()) } ?? http1,
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "jindou-worker"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? listen.port
                logger.notice("worker HTTP serving /health, /ready, /metrics", metadata: ["url": "\(scheme)://\(Endpoint(host: listen.host, port: port))"])
            },
            logger: logger)
    }
}
