import ArgumentParser
import JindouBalancing
import JindouCommandLine
import JindouCoordinator
import JindouServer
import JindouServing
import JindouTransport
import JindouWire
import Logging
import ServiceLifecycle

struct Coordinator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run attention, routing and the HTTP API; drive the expert workers.",
        discussion: """
            Workers either join (jindoud worker --join URL) or are listed with --workers.
            Examples:
              jindoud coordinator --model /models/qwen3-30b --listen 0.0.0.0:8080 --state-dir /var/lib/jindou --replicas 2
              jindoud coordinator --model /models/qwen3-30b --listen 0.0.0.0:8080 \\
                       --workers 10.0.0.2:7070,10.0.0.3:7070 --placement contiguous
            """
    )

    @Option(help: "Checkpoint directory or GGUF file; only non-expert weights are loaded.")
    var model: String

    @Option(help: "HTTP address to serve the API on (port 0 picks a free port).")
    var listen: Endpoint = Endpoint(host: "127.0.0.1", port: 8080)

    @Option(help: "Comma-separated worker addresses host:port (optional: workers may join instead).")
    var workers: String = ""

    @Option(help: "workers (use what --workers hold; by capacity for joining workers), contiguous, round-robin, or a placement file (pins it).")
    var placement: String = "workers"

    @Option(name: .customLong("state-dir"), help: "Directory for the cluster state (members, placement); restored on restart.")
    var stateDir: String?

    @Option(help: "Copies of each expert when placing by capacity (default: the restored value, else 1).")
    var replicas: Int?

    @Option(name: .customLong("heartbeat"), help: "Seconds between liveness checks (workers heartbeat at this interval).")
    var heartbeatSeconds: Double = 1

    @Option(name: .customLong("unreachable-after"), help: "Seconds without contact before a worker is unreachable.")
    var unreachableAfter: Double = 3

    @Option(name: .customLong("gone-after"), help: "Seconds without contact before a worker is gone and its experts are placed elsewhere.")
    var goneAfter: Double = 60

    @OptionGroup var balancing: BalancingOptions
    @OptionGroup var secret: SecretOptions
    @OptionGroup var tls: TLSOptions
    @OptionGroup var servingOptions: ServingOptions

    @Option(name: .customLong("wire-dtype"), help: "Hidden states on the wire: f32 (exact), bf16 (half the bytes) or fp8 (E4M3 + a scale per token, combine in bf16).")
    var wireDType: String = "f32"

    @Option(help: "How to reach workers: auto (shared memory for a worker on this host, RDMA for others when both have an active device, TCP otherwise), tcp, shm or rdma (that one or fail; rdma refuses to start without a device).")
    var transport: TransportChoice = .auto

    @Option(name: .customLong("rdma-device"), help: "RDMA device for --transport rdma|auto, e.g. mlx5_0 or rxe0 (default: the first with an active port).")
    var rdmaDevice: String?

    @Option(name: .customLong("timeout"), help: "Seconds to wait for a worker's reply before failing the request.")
    var timeoutSeconds: Double = 120

    @Flag(name: .customLong("wait-ready"),
          help: "Print the 'ready <url>' line only once every expert is served (/ready answers 200), not as soon as HTTP is up.")
    var waitReady = false

    @OptionGroup var daemon: DaemonOptions

    var endpoints: [Endpoint] { workers.split(separator: ",").compactMap { Endpoint(String($0)) } }

    func validate() throws {
        let parts = workers.split(separator: ",")
        guard endpoints.count == parts.count else {
            throw ValidationError("--workers must be a comma-separated list of host:port, got '\(workers)'")
        }
        if let replicas, replicas < 1 { throw ValidationError("--replicas must be ≥ 1") }
        guard heartbeatSeconds > 0, unreachableAfter > heartbeatSeconds, goneAfter > unreachableAfter else {
            throw ValidationError("need 0 < --heartbeat < --unreachable-after < --gone-after")
        }
        guard WireDType(rawValue: wireDType) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or fp8") }
        guard PlacementChoice(placement) != nil else { throw ValidationError("bad --placement") }
        guard timeoutSeconds > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        _ = metricsRegistry  // bootstrap metrics before anything creates a counter
        let logger = daemon.bootstrapLogging(label: "jindou.coordinator")
        let coordinator: JindouCoordinator.Coordinator
        let clusterSecret: ClusterSecret?
        do {
            clusterSecret = try secret.load(logger: logger)
            coordinator = try await .start(
                .init(modelDirectory: model, workers: endpoints, placement: PlacementChoice(placement)!,
                      wireDType: WireDType(rawValue: wireDType)!, timeoutSeconds: timeoutSeconds, prefault: !daemon.noPrefault,
                      stateDirectory: stateDir, secret: clusterSecret, tls: tls.node,
                      control: .init(heartbeat: .seconds(heartbeatSeconds), unreachableAfter: .seconds(unreachableAfter),
                                     goneAfter: .seconds(goneAfter), replicas: replicas, loadWindowSeconds: balancing.loadWindow,
                                     servingBias: balancing.servingBias),
                      routingTrace: balancing.recordRouting, replicaChoice: ReplicaChoice(rawValue: balancing.replicaChoice)!,
                      multiTokenPrediction: servingOptions.speculative == "mtp", transport: transport, rdmaDevice: rdmaDevice),
                logger: logger)
        } catch {
            throw DaemonError(error)
        }
        let serving: ServingContext
        do {
            serving = try servingOptions.context(engine: coordinator.engine, model: model, controller: coordinator.controller)
        } catch {
            throw DaemonError(error)
        }
        let modelFiles: ModelFileServer?
        do {
            modelFiles = try servingOptions.modelFiles(model: model, authenticated: clusterSecret != nil || tls.node != nil, logger: logger)
        } catch {
            throw DaemonError(error)
        }
        let app = try CoordinatorAPI.application(
            serving: serving, controller: coordinator.controller, secret: clusterSecret, tls: tls.node,
            metrics: metricsRegistry, listen: listen, waitReady: waitReady, limits: servingOptions.connectionLimits,
            modelFiles: modelFiles, logger: logger)
        let group = ServiceGroup(services: [coordinator.controller, SchedulerService(serving.scheduler), app],
                                 gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        await coordinator.shutdown(logger: logger)
    }
}
