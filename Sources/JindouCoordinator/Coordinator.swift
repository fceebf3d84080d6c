import Foundation
import JindouBalancing
import JindouModel
import JindouPlacement
import JindouTransport
import JindouWire
import Logging

/// How the coordinator decides which worker hosts which expert at start.
public enum PlacementChoice: Sendable, Equatable {
    /// What the workers report holding (default for `--workers`), or, with joining
    /// workers, computed from their capacity.
    case fromWorkers
    /// Computed over the workers in `--workers` order; workers must hold their part.
    case contiguous
    case roundRobin
    /// A placement file naming workers by their `--name`; pins the placement.
    case file(String)

    public init?(_ text: String) {
        switch text {
        case "workers", "from-workers", "capacity": self = .fromWorkers
        case "contiguous": self = .contiguous
        case "round-robin": self = .roundRobin
        default:
            guard !text.isEmpty else { return nil }
            self = .file(text)
        }
    }
}

/// The coordinator: non-expert weights in this process, routed experts on the workers,
/// and the control plane that manages them.
public struct Coordinator: Sendable {
    public struct Options: Sendable {
        public var modelDirectory: String
        /// Workers configured up front (`--workers`); more may join.
        public var workers: [Endpoint]
        public var placement: PlacementChoice
        public var wireDType: WireDType
        public var timeoutSeconds: Double
        public var prefault: Bool
        public var stateDirectory: String?
        public var secret: ClusterSecret?
        /// Mutual TLS for node links (the HTTP API takes the same files, see JindouServer).
        public var tls: NodeTLS?
        public var control: ClusterController.Settings
        /// `--record-routing`: trace file for the served routing.
        public var routingTrace: String?
        /// How replicated experts' tokens are split over their copies each step.
        public var replicaChoice: ReplicaChoice = .leastLoaded
        /// Map the checkpoint's MTP layer (and its experts) here, for `--speculative mtp`.
        public var multiTokenPrediction = false
        /// How data links reach workers; the library's default is TCP (a relay or a
        /// namespace test must not be bypassed), jindoud's is auto.
        public var transport: TransportChoice = .tcp
        /// `--rdma-device` (default: the first with an active port).
        public var rdmaDevice: String?

        public init(modelDirectory: String, workers: [Endpoint] = [], placement: PlacementChoice = .fromWorkers,
                    wireDType: WireDType = .f32, timeoutSeconds: Double = 120, prefault: Bool = true,
                    stateDirectory: String? = nil, secret: ClusterSecret? = nil, tls: NodeTLS? = nil,
                    control: ClusterController.Settings = .init(), routingTrace: String? = nil,
                    replicaChoice: ReplicaChoice = .leastLoaded, multiTokenPrediction: Bool = false, transport: TransportChoice = .tcp,
                    rdmaDevice: String? = nil) {
            self.transport = transport
            self.rdmaDevice = rdmaDevice
            self.multiTokenPrediction = multiTokenPrediction
            self.routingTrace = routingTrace
            self.replicaChoice = replicaChoice
            self.modelDirectory = modelDirectory
            self.workers = workers
            self.placement = placement
            self.wireDType = wireDType
            self.timeoutSeconds = timeoutSeconds
            self.prefault = prefault
            self.stateDirectory = stateDirectory
            self.secret = secret
            self.tls = tls
            self.control = control
        }
    }

    public let engine: InferenceEngine
    public let pool: WorkerPool
    public let controller: ClusterController
    public let fingerprint: String
    /// The routing trace being recorded (`routingTrace`); close it at shutdown.
    public let recorder: RoutingRecorder?

    public var placement: Placement { get async { await controller.active } }

    /// Loads the non-expert weights, restores the cluster state (with `stateDirectory`),
    /// connects to every `--workers` worker (failing with the name of any that cannot be
    /// reached or refuses), and sets and validates the starting placement.
    public static func start(_ options: Options, logger: Logger) async throws -> Coordinator {
        let checkpoint = try openWeightSource(options.modelDirectory)
        let description = try checkpoint.modelDescription()
        let fingerprint = try checkpoint.fingerprint()
        let model = try DecoderModel(description: description, checkpoint: checkpoint)
        if options.prefault { model.prefaultWeights(label: "loading coordinator weights") }
        // The MTP layer runs here, experts included: workers never hold it.
        let predictor = options.multiTokenPrediction ? try MultiTokenPredictor(description: description, checkpoint: checkpoint) : nil
        if options.prefault, let predictor { predictor.prefault(label: "loading the MTP layer") }
        let expertBytes = try expertByteCount(checkpoint: checkpoint, description: description)

        let pool = try WorkerPool(fingerprint: fingerprint, secret: options.secret, tls: options.tls, transport: options.transport,
                                  rdmaDevice: options.rdmaDevice, timeoutSeconds: options.timeoutSeconds, logger: logger)
        if options.control.servingBias != nil, description.zeroComputationExperts > 0 {
            // Its bias would cover the identity experts too, which carry no load to balance.
            throw CheckpointError.badConfig(path: options.modelDirectory, field: "zero_expert_num",
                                            reason: "serving-time balancing bias is not supported with zero-computation experts")
        }
        let servingBias = options.control.servingBias.map { settings in
            ServingBias(settings: settings, routers: Dictionary(uniqueKeysWithValues: model.layers.enumerated().compactMap { l, layer in
                if case .sparse(let router, _) = layer.feedForward { return (l, router) } else { return nil }
            }))
        }
        let controller = try ClusterController(
            description: description, fingerprint: fingerprint, pool: pool, expertBytes: expertBytes,
            settings: options.control, stateDirectory: options.stateDirectory, servingBias: servingBias, logger: logger)
        await controller.start()

        var workers: [WorkerInfo] = []
        for endpoint in options.workers {
            let info = try await pool.add(endpoint)
            try await controller.addStatic(info)
            workers.append(info)
        }
        let restoredVersion = await controller.active.version
        if !workers.isEmpty && restoredVersion == 0 {
            let names = workers.map(\.name)
            let placement: Placement
            switch options.placement {
            case .fromWorkers: placement = try Placement.fromWorkers(workers.map { ($0.name, $0.experts) })
            case .contiguous: placement = try Placement.contiguous(workers: names, description: description)
            case .roundRobin: placement = try Placement.roundRobin(workers: names, description: description)
            case .file(let path): placement = try PlacementFile.load(path: path, description: description)
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
            if case .file = options.placement {
                try await controller.setInitialPlacement(placement, pinned: true)
            } else {
                try await controller.setInitialPlacement(placement, pinned: false)
            }
        }
        await controller.tick()
        let recorder = try options.routingTrace.map {
            try RoutingRecorder(path: $0, sparseLayers: description.sparseLayers, expertCount: description.expertCount,
                                expertsPerToken: description.router.expertsPerToken)
        }
        let backend = ClusterExpertBackend(pool: pool, routing: controller.routing, statistics: controller.statistics,
                                           hiddenSize: description.hiddenSize, wireDType: options.wireDType, servingBias: servingBias,
                                           recorder: recorder, replicaChoice: options.replicaChoice)
        let version = await controller.active.version
        logger.info("coordinator ready", metadata: [
            "workers": "\(workers.count)", "placement_version": "\(version)",
            "coordinator_bytes": "\(model.tensors.tensorBytes)",
        ])
        return Coordinator(engine: InferenceEngine(model: model, experts: backend, predictor: predictor), pool: pool, controller: controller,
                           fingerprint: fingerprint, recorder: recorder)
    }

    /// After the services stopped: closes the worker links and the routing trace.
    public func shutdown(logger: Logger) async {
        await pool.closeAll()
        if let recorder {
            recorder.close()
            let p = recorder.progress
            logger.info("routing trace closed", metadata: [
                "path": "\(recorder.path)", "steps": "\(p.steps)", "tokens": "\(p.tokens)", "skipped_tokens": "\(p.skippedTokens)",
                "error": "\(p.error ?? "none")",
            ])
        }
    }

    /// Bytes of one routed expert (its three projections), as the checkpoint stores them.
    static func expertByteCount(checkpoint: any WeightSource, description: ModelDescription) throws -> UInt64 {
        guard let first = description.allExperts.first else { return 1 }
        return UInt64(try checkpoint.byteCount(of: description.expertTensors(first)))
    }
}
