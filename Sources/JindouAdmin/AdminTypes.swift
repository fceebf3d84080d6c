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

    public init(name: String, address: String, cores: Int, memoryBytes: UInt64, fingerprint: String) {
        self.name = name
        self.address = address
        self.cores = cores
        self.memoryBytes = memoryBytes
        self.fingerprint = fingerprint
    }

    enum CodingKeys: String, CodingKey {
        case name, address, cores, fingerprint
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

    public init(name: String, address: String) {
        self.name = name
        self.address = address
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

    public init(name: String, address: String, state: String, origin: String, experts: Int, expertBytes: UInt64,
                memoryBytes: UInt64, cores: Int, loadShare: Double, lastSeenSeconds: Double?) {
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
        case name, address, state, origin, experts, cores
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

    public init(model: String, fingerprint: String, placementVersion: UInt64, stagedVersion: UInt64?, replicas: Int,
                pinned: Bool, servedExperts: Int, totalExperts: Int, settled: Bool, workers: [WorkerStatus]) {
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
            predictedMaxOverMean = PlacementPlanner.workerLoad(new, load: load).max()
            currentMaxOverMean = old.map { PlacementPlanner.workerLoad($0, load: load).max() ?? 0 }
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
    public init(dryRun: Bool) { self.dryRun = dryRun }
    enum CodingKeys: String, CodingKey { case dryRun = "dry_run" }
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

/// `GET /v1/admin/load`: tokens routed per expert and per worker since start.
public struct LoadReport: Codable, Sendable, Equatable {
    public var tokens: Int
    /// Layer (string key) → per-expert token counts.
    public var experts: [String: [Int]]
    public var workers: [String: Int]

    public init(tokens: Int, experts: [String: [Int]], workers: [String: Int]) {
        self.tokens = tokens
        self.experts = experts
        self.workers = workers
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
