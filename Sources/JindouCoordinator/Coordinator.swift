import Foundation
import JindouModel
import JindouPlacement
import JindouTransport
import JindouWire
import Logging

/// How the coordinator decides which worker hosts which expert.
public enum PlacementChoice: Sendable, Equatable {
    /// What the workers report holding (default: start workers with `--experts`).
    case fromWorkers
    /// Computed over the workers in `--workers` order; workers must hold their part.
    case contiguous
    case roundRobin
    /// A placement file naming workers by their `--name`.
    case file(String)

    public init?(_ text: String) {
        switch text {
        case "workers", "from-workers": self = .fromWorkers
        case "contiguous": self = .contiguous
        case "round-robin": self = .roundRobin
        default:
            guard !text.isEmpty else { return nil }
            self = .file(text)
        }
    }
}

/// The coordinator: non-expert weights in this process, routed experts on the workers.
public struct Coordinator: Sendable {
    public struct Options: Sendable {
        public var modelDirectory: String
        public var workers: [Endpoint]
        public var placement: PlacementChoice
        public var wireDType: WireDType
        public var timeoutSeconds: Double
        public var prefault: Bool

        public init(modelDirectory: String, workers: [Endpoint], placement: PlacementChoice = .fromWorkers,
                    wireDType: WireDType = .f32, timeoutSeconds: Double = 120, prefault: Bool = true) {
            self.modelDirectory = modelDirectory
            self.workers = workers
            self.placement = placement
            self.wireDType = wireDType
            self.timeoutSeconds = timeoutSeconds
            self.prefault = prefault
        }
    }

    public let engine: InferenceEngine
    public let pool: WorkerPool
    public let placement: Placement
    public let fingerprint: String

    /// Loads the non-expert weights, connects to every worker (failing with the name of
    /// any that cannot be reached or refuses), and builds and validates the placement.
    public static func start(_ options: Options, logger: Logger) async throws -> Coordinator {
        guard !options.workers.isEmpty else {
            throw PlacementError.badSpec("no workers given (--workers host:port,…)")
        }
        let checkpoint = try Checkpoint(directory: options.modelDirectory)
        let description = try ModelDescription(checkpoint: checkpoint)
        let fingerprint = try ModelFingerprint.compute(checkpoint)
        let model = try DecoderModel(description: description, checkpoint: checkpoint)
        if options.prefault { model.tensors.prefault(label: "loading coordinator weights") }

        let pool = WorkerPool(endpoints: options.workers, fingerprint: fingerprint,
                              timeoutSeconds: options.timeoutSeconds, logger: logger)
        let workers = try await pool.connectAll()
        let names = workers.map(\.name)
        let placement: Placement
        switch options.placement {
        case .fromWorkers:
            placement = try Placement.fromWorkers(workers.map { ($0.name, $0.experts) })
        case .contiguous:
            placement = try Placement.contiguous(workers: names, description: description)
        case .roundRobin:
            placement = try Placement.roundRobin(workers: names, description: description)
        case .file(let path):
            placement = try PlacementFile.load(path: path, description: description)
        }
        try placement.validate(for: description)
        // Every expert the placement puts on a worker must really be there.
        for (index, name) in placement.workers.enumerated() {
            guard let worker = workers.first(where: { $0.name == name }) else { throw PlacementError.unknownWorker(name) }
            let held = Set(worker.experts)
            for key in placement.experts(ofWorker: index) where !held.contains(key) {
                throw ClusterError.workerRefused(
                    worker: name, reason: "placement puts expert \(key.expert) of layer \(key.layer) there, but the worker does not hold it")
            }
        }
        let backend = try await ClusterExpertBackend(pool: pool, placement: placement, hiddenSize: description.hiddenSize,
                                                     wireDType: options.wireDType)
        logger.info("coordinator ready", metadata: [
            "workers": "\(workers.count)", "placement_version": "\(placement.version)",
            "coordinator_bytes": "\(model.tensors.tensorBytes)",
        ])
        return Coordinator(engine: InferenceEngine(model: model, experts: backend), pool: pool,
                           placement: placement, fingerprint: fingerprint)
    }
}
