import ArgumentParser
import JindouBalancing
import JindouCommandLine
import Foundation
import JindouCoordinator
import JindouServer
import JindouServing
import JindouTransport
import JindouWire
import Logging
import ServiceLifecycle

struct Local: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A whole cluster on this machine: N worker processes and a coordinator on loopback.",
        discussion: """
            Example: jindoud local --model Tests/Fixtures/qwen3-moe-tiny --workers 2
            then:    jindouctl generate --coordinator http://127.0.0.1:8080 --prompt-ids 1,2,3 --json
            """
    )

    @Option(help: "Checkpoint directory or GGUF file.")
    var model: String

    @Option(help: "Number of worker processes.")
    var workers: Int = 2

    @Option(help: "HTTP address of the coordinator API (port 0 picks a free port).")
    var listen: Endpoint = Endpoint(host: "127.0.0.1", port: 8080)

    @Option(help: "contiguous or round-robin.")
    var placement: String = "contiguous"

    @Option(name: .customLong("wire-dtype"), help: "Hidden states on the wire: f32 (exact), bf16 or fp8 (E4M3 + a scale per token, combine in bf16).")
    var wireDType: String = "f32"

    @Option(help: "How the coordinator reaches its workers: auto (shared memory where attaching succeeds, TCP otherwise), tcp, shm or rdma (that one or fail; rdma needs an active RDMA device, e.g. SoftRoCE).")
    var transport: TransportChoice = .auto

    @Option(name: .customLong("rdma-device"), help: "RDMA device for --transport rdma|auto, e.g. mlx5_0 or rxe0 (default: the first with an active port).")
    var rdmaDevice: String?

    @Option(name: .customLong("state-dir"), help: "Directory for the cluster state (members, placement).")
    var stateDir: String?

    @OptionGroup var balancing: BalancingOptions
    @OptionGroup var secret: SecretOptions
    @OptionGroup var tls: TLSOptions
    @OptionGroup var servingOptions: ServingOptions

    @OptionGroup var daemon: DaemonOptions

    func validate() throws {
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be in 1…64") }
        guard ["contiguous", "round-robin"].contains(placement) else {
            throw ValidationError("--placement must be contiguous or round-robin")
        }
        guard WireDType(rawValue: wireDType) != nil else { throw ValidationError("--wire-dtype must be f32, bf16 or fp8") }
    }

    func run() async throws {
        _ = metricsRegistry  // bootstrap metrics before anything creates a counter
        let logger = daemon.bootstrapLogging(label: "jindou.local")
        let processes = LocalWorkers(logger: logger)
        let coordinator: JindouCoordinator.Coordinator
        let clusterSecret: ClusterSecret?
        do {
            clusterSecret = try secret.load(logger: logger)
            // Refused before any worker starts: each would fail the same way.
            if transport == .rdma { _ = try RDMADevices.require(named: rdmaDevice) }
            var endpoints: [Endpoint] = []
            for index in 0..<workers {
                var arguments = ["worker", "--model", model, "--listen", "127.0.0.1:0", "--name", "local-\(index)",
                                 "--experts", "\(placement):\(index)/\(workers)", "--log-level", daemon.logLevel]
                if daemon.noPrefault { arguments.append("--no-prefault") }
                if transport != .auto { arguments += ["--transport", transport.rawValue] }
                if let rdmaDevice { arguments += ["--rdma-device", rdmaDevice] }
                if let file = secret.tokenFile { arguments += ["--token-file", file] }
                arguments += tls.arguments
                endpoints.append(try processes.start(arguments: arguments))
            }
            coordinator = try await .start(
                .init(modelDirectory: model, workers: endpoints, placement: PlacementChoice(placement)!,
                      wireDType: WireDType(rawValue: wireDType)!, prefault: !daemon.noPrefault, stateDirectory: stateDir,
                      secret: clusterSecret, tls: tls.node,
                      control: .init(loadWindowSeconds: balancing.loadWindow, servingBias: balancing.servingBias),
                      routingTrace: balancing.recordRouting, replicaChoice: ReplicaChoice(rawValue: balancing.replicaChoice)!,
                      multiTokenPrediction: servingOptions.speculative == "mtp", transport: transport, rdmaDevice: rdmaDevice),
                logger: logger)
        } catch {
            processes.stopAll()
            throw DaemonError(error)
        }
        // From here on a failure must still stop the worker children (they would outlive us).
        let serving: ServingContext
        let app: any Service
        do {
            serving = try servingOptions.context(engine: coordinator.engine, model: model, controller: coordinator.controller)
            app = try CoordinatorAPI.application(
                serving: serving, controller: coordinator.controller, secret: clusterSecret, tls: tls.node,
                metrics: metricsRegistry, listen: listen, waitReady: true, limits: servingOptions.connectionLimits,
                modelFiles: try servingOptions.modelFiles(model: model, authenticated: clusterSecret != nil || tls.node != nil, logger: logger),
                logger: logger)
        } catch {
            await coordinator.shutdown(logger: logger)
            processes.stopAll()
            throw DaemonError(error)
        }
        // Services stop in reverse order: the API first, then the control loop, then the workers.
        let group = ServiceGroup(services: [processes, coordinator.controller, SchedulerService(serving.scheduler), app],
                                 gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch {
            processes.stopAll()
            throw error
        }
        await coordinator.shutdown(logger: logger)
    }
}

/// The worker child processes of `jindoud local`; stopped (SIGTERM, then waited for)
/// when the service group shuts down.
final class LocalWorkers: Service, @unchecked Sendable {
    // @unchecked: `children` is only touched under `lock`.
    private let lock = NSLock()
    private var children: [Process] = []
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// Starts `jindoud <arguments>` and waits for its `ready tcp://host:port` line.
    func start(arguments: [String]) throws -> Endpoint {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        // Its flags are all on its command line: this process's JINDOU_<FLAG> variables were
        // meant for `local`, not for its workers (the thread count is passed on on purpose).
        process.environment = FlagConfiguration.environmentWithoutFlags(root: Jindoud.self, subcommand: "worker", keeping: ["JINDOU_THREADS"])
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.standardError
        try process.run()
        lock.withLock { children.append(process) }
        let line = readLine(stdout.fileHandleForReading)
        guard let line, line.hasPrefix("ready "), let endpoint = Endpoint(String(line.dropFirst(6))) else {
            process.waitUntilExit()
            throw DaemonError(WorkerStartError(arguments: arguments, status: process.terminationStatus))
        }
        return endpoint
    }

    /// Reads one line (blocking) from a pipe; nil at end of file.
    private func readLine(_ handle: FileHandle) -> String? {
        var bytes: [UInt8] = []
        while true {
            let chunk = handle.readData(ofLength: 1)
            if chunk.isEmpty { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if chunk.first == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(contentsOf: chunk)
        }
    }

    func run() async throws {
        try? await gracefulShutdown()
        stopAll()
    }

    func stopAll() {
        let processes = lock.withLock { children }
        for process in processes where process.isRunning { process.terminate() }
        for process in processes { process.waitUntilExit() }
        logger.info("workers stopped", metadata: ["count": "\(processes.count)"])
    }
}

struct WorkerStartError: Error, CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    var description: String { "worker process (jindoud \(arguments.joined(separator: " "))) exited with status \(status) before it was ready" }
}
