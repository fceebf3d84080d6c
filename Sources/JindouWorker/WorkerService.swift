import Foundation
import JindouModel
import JindouPlacement
import JindouTransport
import JindouWire
import Logging
import ServiceLifecycle

/// `jindoud worker`: loads only its experts from a local checkpoint copy and serves
/// dispatch/combine until SIGTERM/SIGINT.
public struct WorkerService: Service {
    public struct Options: Sendable {
        public var modelDirectory: String
        public var listen: Endpoint
        /// `--experts` (see `expertsForSpec`) or a placement file plus this worker's name.
        public var expertSpec: String
        public var placementFile: String?
        public var name: String?
        public var maximumPayloadLength: Int
        public var prefault: Bool

        public init(modelDirectory: String, listen: Endpoint, expertSpec: String = "all", placementFile: String? = nil,
                    name: String? = nil, maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength, prefault: Bool = true) {
            self.modelDirectory = modelDirectory
            self.listen = listen
            self.expertSpec = expertSpec
            self.placementFile = placementFile
            self.name = name
            self.maximumPayloadLength = maximumPayloadLength
            self.prefault = prefault
        }
    }

    public let state: WorkerState
    public let server: FrameServer
    let logger: Logger

    /// Loads the shard and binds the listening socket; `ready` is printed by the caller.
    public init(options: Options, logger: Logger) async throws {
        let checkpoint = try Checkpoint(directory: options.modelDirectory)
        let description = try ModelDescription(checkpoint: checkpoint)
        let server = try await FrameServer(endpoint: options.listen, maximumPayloadLength: options.maximumPayloadLength, logger: logger)
        let bound = server.boundEndpoint ?? options.listen
        let name = options.name ?? "\(ProcessInfo.processInfo.hostName):\(bound.port)"
        let keys: [ExpertKey]
        if let file = options.placementFile {
            keys = try PlacementFile.load(path: file, description: description).experts(ofWorker: name)
        } else {
            keys = try expertsForSpec(options.expertSpec, description: description)
        }
        let shard = try ExpertShard(description: description, checkpoint: checkpoint, keys: keys)
        if options.prefault { shard.tensors.prefault(label: "loading experts") }
        let fingerprint = try ModelFingerprint.compute(checkpoint)
        state = WorkerState(name: name, description: description, fingerprint: fingerprint, shard: shard)
        self.server = server
        self.logger = logger
        logger.info("worker loaded", metadata: [
            "name": "\(name)", "experts": "\(keys.count)", "expert_bytes": "\(shard.byteCount)",
            "mapped_bytes": "\(shard.tensors.mappedBytes)", "listen": "\(bound)",
        ])
    }

    /// `tcp://host:port` actually bound.
    public var url: String { "tcp://\(server.boundEndpoint ?? Endpoint(host: "?", port: 0))" }

    public func run() async throws {
        let state = self.state
        let logger = self.logger
        do {
            try await cancelWhenGracefulShutdown {
                try await server.run { WorkerSession(state: state, logger: logger) }
            }
        } catch is CancellationError {
            // Graceful shutdown: connections were cancelled, nothing to report.
        }
        logger.info("worker stopped", metadata: ["name": "\(state.name)"])
    }
}
