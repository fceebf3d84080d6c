import Foundation
import JindouModel
import JindouPlacement

// The JSON bodies of the coordinator's admin API (docs/admin-api.md). Field names are
// snake_case on the wire; `jindouctl --json` prints these same objects.

/// A worker registering itself (`POST /v1/admin/workers/join`).
public struct JoinRequest: Codable, Sendable, Equatable {
    public var name: String
    /// Where the coordinator reaches the worker's data plane, `host:port`.
    public var address: String
    public var cores: Int
    /// Bytes of memory the worker offers for experts.
    public var memoryBytes: UInt64
    public var fingerprint: String
    /// A worker without a local checkpoint: what it has fetched (nil otherwise).
    public var fetch: FetchStatus?

    public init(name: String, address: String, cores: Int, memoryBytes: UInt64, fingerprint: String, fetch: FetchStatus? = nil) {
        self.fetch = fetch
        self.name = name
        self.address = address
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.fingerprint = fingerprint
    }

    enum CodingKeys: String, CodingKey {
        case name, address, cores, fingerprint, fetch
        case memoryBytes = "memory_bytes"
    }
}

public struct JoinResponse: Codable, Sendable, Equatable {
    public var heartbeatSeconds: Double
    public var state: String

    public init(heartbeatSeconds: Double, state: String) {
        self.heartbeatSeconds = heartbeatSeconds
        self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case heartbeatSeconds = "heartbeat_seconds"
        case state
    }
}

/// `POST /v1/admin/workers/heartbeat`; 404 means "unknown worker: join again".
public struct HeartbeatRequest: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    /// A worker without a local checkpoint: progress of its current fetch (nil otherwise).
    public var fetch: FetchStatus?

    public init(name: String, address: String, fetch: FetchStatus? = nil) {
        self.name = name
        self.address = address
        self.fetch = fetch
    }
}

/// Weights a worker started with `--cache-dir` is fetching from the coordinator.
public struct FetchStatus: Codable, Sendable, Equatable {
    /// Since the worker started: bytes fetched, and bytes fetched plus still to fetch (equal when idle).
    public var fetchedBytes: UInt64
    public var totalBytes: UInt64
    /// Bytes an earlier run fetched that were re-verified at start, and ones that failed and are fetched again.
    public var verifiedAtStartBytes: UInt64
    public var corruptAtStartBytes: UInt64

    public init(fetchedBytes: UInt64, totalBytes: UInt64, verifiedAtStartBytes: UInt64 = 0, corruptAtStartBytes: UInt64 = 0) {
        self.fetchedBytes = fetchedBytes
        self.totalBytes = totalBytes
        self.verifiedAtStartBytes = verifiedAtStartBytes
        self.corruptAtStartBytes = corruptAtStartBytes
    }

    enum CodingKeys: String, CodingKey {
        case fetchedBytes = "fetched_bytes"
        case totalBytes = "total_bytes"
        case verifiedAtStartBytes = "verified_at_start_bytes"
        case corruptAtStartBytes = "corrupt_at_start_bytes"
    }
}

/// One worker in `jindouctl status`.
public struct WorkerStatus: Codable, Sendable, Equatable {
    public var name: String
    public var address: String
    /// joining, ready, draining, drained, unreachable or gone.
    public var state: String
    public var origin: String
    public var experts: Int
    public var expertBytes: UInt64
    public var memoryBytes: UInt64
    public var cores: Int
    /// Share of routed (token, expert) assignments this worker served.
    public var loadShare: Double
    /// Seconds since the coordinator last heard from it (nil: never).
    public var lastSeenSeconds: Double?
    /// What carries its data link: tcp, tls or shm (nil: not connected).
    public var transport: String?
    /// Its weight fetch, for a worker without a local checkpoint (nil otherwise).
    public var fetch: FetchStatus?

    public init(name: String, address: String, state: String, origin: String, experts: Int, expertBytes: UInt64,
                memoryBytes: UInt64, cores: Int, loadShare: Double, lastSeenSeconds: Double?, transport: String? = nil,
                fetch: FetchStatus? = nil) {
        self.transport = transport
        self.fetch = fetch
        self.name = name
        self.address = address
        self.state = state
        self.origin = origin
        self.experts = experts
        self.expertBytes = expertBytes
        self.memoryBytes = memoryBytes
        self.cores = cores
        self.loadShare = loadShare
        self.lastSeenSeconds = lastSeenSeconds
    }

    enum CodingKeys: String, CodingKey {
        case name, address, state, origin, experts, cores, transport, fetch
        case expertBytes = "expert_bytes"
        case memoryBytes = "memory_bytes"
        case loadShare = "load_share"
        case lastSeenSeconds = "last_seen_seconds"
    }
}

/// `GET /v1/admin/status`.
public struct ClusterStatus: Codable, Sendable, Equatable {
    public var model: String
    public var fingerprint: String
    public var placementVersion: UInt64
    public var stagedVersion: UInt64?
    public var replicas: Int
    public var pinned: Bool
    public var servedExperts: Int
    public var totalExperts: Int
    /// No placement change in progress and every live worker holds exactly its part.
    public var settled: Bool
    public var workers: [WorkerStatus]
    /// What one sequence holds on the coordinator whatever its length (linear-attention
    /// state), and per cached token (KV rows), fp32 — the scheduler's budget arithmetic.
    public var sequenceFixedBytes: Int?
    public var kvBytesPerToken: Int?

    public init(model: String, fingerprint: String, placementVersion: UInt64, stagedVersion: UInt64?, replicas: Int,
                pinned: Bool, servedExperts: Int, totalExperts: Int, settled: Bool, workers: [WorkerStatus],
                sequenceFixedBytes: Int? = nil, kvBytesPerToken: Int? = nil) {
        self.sequenceFixedBytes = sequenceFixedBytes
        self.kvBytesPerToken = kvBytesPerToken
        self.model = model
        self.fingerprint = fingerprint
        self.placementVersion = placementVersion
        self.stagedVersion = stagedVersion
        self.replicas = replicas
        self.pinned = pinned
        self.servedExperts = servedExperts
        self.totalExperts = totalExperts
        self.settled = settled
        self.workers = workers
    }

    enum CodingKeys: String, CodingKey {
        case model, fingerprint, replicas, pinned, workers, settled
        case sequenceFixedBytes = "sequence_fixed_bytes"
        case kvBytesPerToken = "kv_bytes_per_token"
        case placementVersion = "placement_version"
        case stagedVersion = "staged_version"
        case servedExperts = "served_experts"
        case totalExperts = "total_experts"
    }
}

/// `GET /v1/admin/shards[?layer=N]`: per layer, per expert, its hosts.
public struct ShardsReport: Codable, Sendable, Equatable {
    public struct Layer: Codable, Sendable, Equatable {
        public var layer: Int
        /// Expert index (as a string key) → worker names, primary first.
        public var experts: [String: [String]]
    }
    public var placementVersion: UInt64
    public var layers: [Layer]

    public init(placement: Placement, layer: Int?) {
        placementVersion = placement.version
        var byLayer: [Int: [String: [String]]] = [:]
        for (key, hosts) in placement.hosts where layer == nil || key.layer == layer {
            byLayer[key.layer, default: [:]][String(key.expert)] = hosts.map { placement.workers[$0] }
        }
        layers = byLayer.keys.sorted().map { Layer(layer: $0, experts: byLayer[$0]!) }
    }

    enum CodingKeys: String, CodingKey {
        case layers
        case placementVersion = "placement_version"
    }
}

/// The result of scale, drain or rebalance: what moves and the expected balance.
public struct PlacementChange: Codable, Sendable, Equatable {
    public struct WorkerDiff: Codable, Sendable, Equatable {
        public var worker: String
        public var added: [String: String]
        public var removed: [String: String]
        public var addedCount: Int
        public var removedCount: Int

        enum CodingKeys: String, CodingKey {
            case worker, added, removed
            case addedCount = "added_count"
            case removedCount = "removed_count"
        }
    }
    public var fromVersion: UInt64
    public var toVersion: UInt64
    public var applied: Bool
    public var diff: [WorkerDiff]
    /// Predicted worker load ÷ mean under the new placement (from measured expert load).
    public var predictedMaxOverMean: Double?
    public var currentMaxOverMean: Double?

    public init(from old: Placement?, to new: Placement, applied: Bool, load: [ExpertKey: Double]?) {
        fromVersion = old?.version ?? 0
        toVersion = new.version
        self.applied = applied
        diff = PlacementPlanner.diff(from: old, to: new).map {
            WorkerDiff(worker: $0.worker, added: ExpertSetCoding.layers($0.added).stringKeys,
                       removed: ExpertSetCoding.layers($0.removed).stringKeys, addedCount: $0.added.count,
                       removedCount: $0.removed.count)
        }
        if let load, load.values.contains(where: { $0 > 0 }) {
            predictedMaxOverMean = PlacementPlanner.stepMaxOverMean(new, load: load)
            currentMaxOverMean = old.map { PlacementPlanner.stepMaxOverMean($0, load: load) }
        }
    }

    enum CodingKeys: String, CodingKey {
        case applied, diff
        case fromVersion = "from_version"
        case toVersion = "to_version"
        case predictedMaxOverMean = "predicted_max_over_mean"
        case currentMaxOverMean = "current_max_over_mean"
    }
}

public struct ScaleRequest: Codable, Sendable {
    public var replicas: Int
    public init(replicas: Int) { self.replicas = replicas }
}

public struct DrainRequest: Codable, Sendable {
    public var worker: String
    public init(worker: String) { self.worker = worker }
}

public struct RebalanceRequest: Codable, Sendable {
    public var dryRun: Bool
    /// Replicate hot experts into this many extra slots per layer, as a fraction of the
    /// expert count (EPLB; 0.25 → E + 25 %). Absent: move experts only, `replicas` copies each.
    public var extraSlots: Double?
    /// With `extraSlots`: what the packing balances, `tokens` (default) or `activated`
    /// (distinct experts each worker reads per step).
    public var objective: String?
    public init(dryRun: Bool, extraSlots: Double? = nil, objective: String? = nil) {
        self.dryRun = dryRun
        self.extraSlots = extraSlots
        self.objective = objective
    }
    enum CodingKeys: String, CodingKey {
        case dryRun = "dry_run"
        case extraSlots = "extra_slots"
        case objective
    }
}

/// `GET /v1/admin/verify`.
public struct VerifyReport: Codable, Sendable, Equatable {
    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var ok: Bool
        public var detail: String
        public init(name: String, ok: Bool, detail: String) {
            self.name = name
            self.ok = ok
            self.detail = detail
        }
    }
    public var ok: Bool
    public var checks: [Check]
    public init(checks: [Check]) {
        self.checks = checks
        ok = checks.allSatisfy(\.ok)
    }
}

/// `GET /v1/admin/load`: tokens routed per expert and per worker since start, the same
/// over the sliding window (`--load-window`), and the serving-time bias (`--balance-bias`).
public struct LoadReport: Codable, Sendable, Equatable {
    /// Since start: tokens routed, layer (string key) → per-expert assignments, worker → assignments.
    public var tokens: Int
    public var experts: [String: [Int]]
    public var workers: [String: Int]
    /// Over the sliding window (nil from a coordinator that predates it).
    public var window: LoadWindowReport?
    /// Serving-time bias (nil unless `--balance-bias`).
    public var bias: ServingBiasReport?

    public init(tokens: Int, experts: [String: [Int]], workers: [String: Int], window: LoadWindowReport? = nil,
                bias: ServingBiasReport? = nil) {
        self.tokens = tokens
        self.experts = experts
        self.workers = workers
        self.window = window
        self.bias = bias
    }
}

/// Routing statistics over the last `seconds` seconds.
public struct LoadWindowReport: Codable, Sendable, Equatable {
    /// One worker in the window.
    public struct Worker: Codable, Sendable, Equatable {
        public var name: String
        /// (token, expert) assignments it computed, and its share of all assignments.
        public var assignments: Int
        public var share: Double
        /// MoE-layer dispatches it received.
        public var dispatches: Int
        /// Distinct experts it computed per dispatch, on average (≤ hostedExperts per layer).
        public var activatedExpertsPerStep: Double
        /// Experts it hosts in its fullest layer: the bound on activated experts per step.
        public var hostedExperts: Int
        /// Dispatch payload bytes to it and back.
        public var bytesSent: UInt64
        public var bytesReceived: UInt64
        /// Dispatch round trips (send, compute on the worker, combine), summed.
        public var dispatchSeconds: Double
        /// Expert computation on the worker, summed (as each worker reports in its replies);
        /// dispatch minus compute is the network and queueing share.
        public var computeSeconds: Double

        public init(name: String, assignments: Int, share: Double, dispatches: Int, activatedExpertsPerStep: Double,
                    hostedExperts: Int, bytesSent: UInt64, bytesReceived: UInt64, dispatchSeconds: Double, computeSeconds: Double = 0) {
            self.computeSeconds = computeSeconds
            self.name = name
            self.assignments = assignments
            self.share = share
            self.dispatches = dispatches
            self.activatedExpertsPerStep = activatedExpertsPerStep
            self.hostedExperts = hostedExperts
            self.bytesSent = bytesSent
            self.bytesReceived = bytesReceived
            self.dispatchSeconds = dispatchSeconds
        }

        enum CodingKeys: String, CodingKey {
            case name, assignments, share, dispatches
            case activatedExpertsPerStep = "activated_experts_per_step"
            case hostedExperts = "hosted_experts_per_layer"
            case bytesSent = "bytes_sent"
            case bytesReceived = "bytes_received"
            case dispatchSeconds = "dispatch_seconds"
            case computeSeconds = "compute_seconds"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(name: try c.decode(String.self, forKey: .name), assignments: try c.decode(Int.self, forKey: .assignments),
                      share: try c.decode(Double.self, forKey: .share), dispatches: try c.decode(Int.self, forKey: .dispatches),
                      activatedExpertsPerStep: try c.decode(Double.self, forKey: .activatedExpertsPerStep),
                      hostedExperts: try c.decode(Int.self, forKey: .hostedExperts), bytesSent: try c.decode(UInt64.self, forKey: .bytesSent),
                      bytesReceived: try c.decode(UInt64.self, forKey: .bytesReceived),
                      dispatchSeconds: try c.decode(Double.self, forKey: .dispatchSeconds),
                      computeSeconds: try c.decodeIfPresent(Double.self, forKey: .computeSeconds) ?? 0)
        }
    }

    /// One sparse layer in the window.
    public struct Layer: Codable, Sendable, Equatable {
        public var layer: Int
        /// Assignments per expert.
        public var experts: [Int]
        /// Largest and mean expert load, and max ÷ mean.
        public var max: Int
        public var mean: Double
        public var maxOverMean: Double
        /// Experts that received any token.
        public var activeExperts: Int
        /// Assignments per worker in this layer, in the order of the report's `workers`
        /// (absent from coordinators before it was measured).
        public var workers: [Int]?

        public init(layer: Int, experts: [Int], workers: [Int]? = nil) {
            self.layer = layer
            self.experts = experts
            self.workers = workers
            max = experts.max() ?? 0
            mean = experts.isEmpty ? 0 : Double(experts.reduce(0, +)) / Double(experts.count)
            maxOverMean = mean > 0 ? Double(max) / mean : 0
            activeExperts = experts.filter { $0 > 0 }.count
        }

        enum CodingKeys: String, CodingKey {
            case layer, experts, max, mean
            case maxOverMean = "max_over_mean"
            case activeExperts = "active_experts"
            case workers = "worker_assignments"
        }
    }

    /// Window length configured, and seconds it covers so far.
    public var seconds: Int
    public var coveredSeconds: Int
    /// Tokens routed (each counted once per step).
    public var tokens: Int
    /// Assignments summed over workers (= tokens × experts per token × sparse layers).
    public var assignments: Int
    /// Worker load (assignments over all layers) max ÷ mean over the placement's workers.
    public var workerMaxOverMean: Double
    /// What a step waits for: Σ over layers of the busiest worker's assignments in that
    /// layer ÷ Σ over layers of the mean (each MoE layer waits for its slowest worker, so
    /// imbalance that cancels out across layers still costs time). ≥ `workerMaxOverMean`.
    public var stepMaxOverMean: Double?
    /// Activated experts per step, max ÷ mean over workers.
    public var activatedMaxOverMean: Double
    public var workers: [Worker]
    public var layers: [Layer]

    public init(seconds: Int, coveredSeconds: Int, tokens: Int, workers: [Worker], layers: [Layer]) {
        self.seconds = seconds
        self.coveredSeconds = coveredSeconds
        self.tokens = tokens
        self.workers = workers
        self.layers = layers
        assignments = workers.reduce(0) { $0 + $1.assignments }
        workerMaxOverMean = Self.maxOverMean(workers.map { Double($0.assignments) })
        let perLayer = layers.compactMap(\.workers).filter { !$0.isEmpty }
        if !perLayer.isEmpty {
            let sumMax = perLayer.reduce(0.0) { $0 + Double($1.max() ?? 0) }
            let sumMean = perLayer.reduce(0.0) { $0 + Double($1.reduce(0, +)) / Double($1.count) }
            stepMaxOverMean = sumMean > 0 ? sumMax / sumMean : 0
        }
        activatedMaxOverMean = Self.maxOverMean(workers.map(\.activatedExpertsPerStep))
    }

    static func maxOverMean(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let mean = values.reduce(0, +) / Double(values.count)
        return mean > 0 ? (values.max() ?? 0) / mean : 0
    }

    enum CodingKeys: String, CodingKey {
        case seconds, tokens, assignments, workers, layers
        case coveredSeconds = "covered_seconds"
        case workerMaxOverMean = "worker_max_over_mean"
        case stepMaxOverMean = "step_max_over_mean"
        case activatedMaxOverMean = "activated_max_over_mean"
    }
}

/// The serving-time balancing bias (`--balance-bias`) and the routing change it causes.
public struct ServingBiasReport: Codable, Sendable, Equatable {
    public struct Layer: Codable, Sendable, Equatable {
        public var layer: Int
        public var maxAbsBias: Double
        /// Fraction of top-k choices the current bias changes on the layer's sampled tokens, and mean KL.
        public var routingChange: Double
        public var divergence: Double
        public var backoffs: Int
        public var bias: [Float]

        public init(layer: Int, maxAbsBias: Double, routingChange: Double, divergence: Double, backoffs: Int, bias: [Float]) {
            self.layer = layer
            self.maxAbsBias = maxAbsBias
            self.routingChange = routingChange
            self.divergence = divergence
            self.backoffs = backoffs
            self.bias = bias
        }

        enum CodingKeys: String, CodingKey {
            case layer, backoffs, bias
            case maxAbsBias = "max_abs_bias"
            case routingChange = "routing_change"
            case divergence = "kl"
        }
    }

    public var gamma: Double
    public var cap: Double
    public var maxRoutingChange: Double
    /// `--max-routing-kl` (nil: not limited).
    public var maxDivergence: Double?
    /// Updates applied so far.
    public var updates: Int
    public var maxAbsBias: Double
    /// Guard figures: on sampled tokens, the current bias vs none (all layers).
    public var routingChange: Double
    public var divergence: Double
    /// The same measured on live tokens as they were routed (since the last window).
    public var observedRoutingChange: Double
    public var observedDivergence: Double
    /// Times a bias was halved because it changed more than `maxRoutingChange`.
    public var backoffs: Int
    public var layers: [Layer]

    public init(gamma: Double, cap: Double, maxRoutingChange: Double, updates: Int, maxAbsBias: Double, routingChange: Double,
                divergence: Double, observedRoutingChange: Double, observedDivergence: Double, backoffs: Int, layers: [Layer],
                maxDivergence: Double? = nil) {
        self.maxDivergence = maxDivergence
        self.gamma = gamma
        self.cap = cap
        self.maxRoutingChange = maxRoutingChange
        self.updates = updates
        self.maxAbsBias = maxAbsBias
        self.routingChange = routingChange
        self.divergence = divergence
        self.observedRoutingChange = observedRoutingChange
        self.observedDivergence = observedDivergence
        self.backoffs = backoffs
        self.layers = layers
    }

    enum CodingKeys: String, CodingKey {
        case gamma, cap, updates, backoffs, layers
        case maxRoutingChange = "max_routing_change"
        case maxDivergence = "max_kl"
        case maxAbsBias = "max_abs_bias"
        case routingChange = "routing_change"
        case divergence = "kl"
        case observedRoutingChange = "observed_routing_change"
        case observedDivergence = "observed_kl"
    }
}

/// OpenAI-style error body.
public struct APIError: Codable, Sendable, Error, CustomStringConvertible {
    public struct Detail: Codable, Sendable {
        public var message: String
        public var type: String
        public var code: String?
    }
    public var error: Detail
    public init(message: String, type: String, code: String? = nil) { error = Detail(message: message, type: type, code: code) }
    public var description: String { error.message }
}

extension Dictionary where Key == Int {
    var stringKeys: [String: Value] { Dictionary<String, Value>(uniqueKeysWithValues: map { (String($0.key), $0.value) }) }
}

/// `GET /ready`: whether the server can compute the model now (every expert of the active
/// placement held by a live worker), and if not, what is missing.
public struct ReadinessReport: Codable, Sendable, Equatable {
    public var ready: Bool
    /// What is missing, for people (nil when ready).
    public var reason: String?
    public var placementVersion: UInt64?
    public var servedExperts: Int?
    public var totalExperts: Int?
    /// Up to ten (layer, expert) pairs no live worker serves, as `layer L expert E`.
    public var unserved: [String]?

    public init(ready: Bool, reason: String? = nil, placementVersion: UInt64? = nil, servedExperts: Int? = nil,
                totalExperts: Int? = nil, unserved: [String]? = nil) {
        self.ready = ready
        self.reason = reason
        self.placementVersion = placementVersion
        self.servedExperts = servedExperts
        self.totalExperts = totalExperts
        self.unserved = unserved
    }

    enum CodingKeys: String, CodingKey {
        case ready, reason, unserved
        case placementVersion = "placement_version"
        case servedExperts = "served_experts"
        case totalExperts = "total_experts"
    }
}
