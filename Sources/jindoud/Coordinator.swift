import ArgumentParser
import JindouCoordinator
import JindouServer
import JindouTransport
import JindouWire
import ServiceLifecycle

struct Coordinator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run attention, routing and the HTTP API; drive the expert workers.",
        discussion: """
            Example: jindoud coordinator --model /models/qwen3-30b --listen 0.0.0.0:8080 \\
                       --workers 10.0.0.2:7070,10.0.0.3:7070 --placement contiguous
            """
    )

    @Option(help: "Checkpoint directory; only non-expert weights are loaded.")
    var model: String

    @Option(help: "HTTP address to serve the API on (port 0 picks a free port).")
    var listen: Endpoint = Endpoint(host: "127.0.0.1", port: 8080)

    @Option(help: "Comma-separated worker addresses host:port.")
    var workers: String

    @Option(help: "workers (use what workers hold), contiguous, round-robin, or a placement file.")
    var placement: String = "workers"

    @Option(name: .customLong("wire-dtype"), help: "Hidden states on the wire: f32 (exact) or bf16 (half the bytes).")
    var wireDType: String = "f32"

    @Option(name: .customLong("timeout"), help: "Seconds to wait for a worker's reply before failing the request.")
    var timeoutSeconds: Double = 120

    @OptionGroup var daemon: DaemonOptions

    var endpoints: [Endpoint] { workers.split(separator: ",").compactMap { Endpoint(String($0)) } }

    func validate() throws {
        let parts = workers.split(separator: ",")
        guard !parts.isEmpty, endpoints.count == parts.count else {
            throw ValidationError("--workers must be a comma-separated list of host:port, got '\(workers)'")
        }
        guard WireDType(rawValue: wireDType) != nil else { throw ValidationError("--wire-dtype must be f32 or bf16") }
        guard PlacementChoice(placement) != nil else { throw ValidationError("bad --placement") }
        guard timeoutSeconds > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let logger = daemon.bootstrapLogging(label: "jindou.coordinator")
        let coordinator: JindouCoordinator.Coordinator
        do {
            coordinator = try await .start(
                .init(modelDirectory: model, workers: endpoints, placement: PlacementChoice(placement)!,
                      wireDType: WireDType(rawValue: wireDType)!, timeoutSeconds: timeoutSeconds, prefault: !daemon.noPrefault),
                logger: logger)
        } catch {
            throw DaemonError(error)
        }
        let app = CoordinatorAPI.application(
            engine: coordinator.engine, pool: coordinator.pool, placement: coordinator.placement, listen: listen, logger: logger)
        let group = ServiceGroup(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        await coordinator.pool.closeAll()
    }
}
