import Foundation
import JindouModel

/// Errors in a placement, naming the (layer, expert) or worker at fault.
public enum PlacementError: Error, Equatable, CustomStringConvertible {
    case unhosted(layer: Int, expert: Int)
    case unknownWorker(String)
    case duplicateWorker(String)
    case layerNotSparse(layer: Int)
    case expertOutOfRange(expert: Int, expertCount: Int)
    case badSpec(String)
    case badFile(path: String, reason: String)
    case insufficientCapacity(needed: UInt64, available: UInt64)

    public var description: String {
        switch self {
        case .unhosted(let layer, let expert):
            "placement does not host expert \(expert) of layer \(layer) on any worker"
        case .unknownWorker(let name): "placement names unknown worker '\(name)'"
        case .duplicateWorker(let name): "worker name '\(name)' appears twice"
        case .layerNotSparse(let layer): "layer \(layer) has no routed experts"
        case .expertOutOfRange(let expert, let count): "expert \(expert) is out of range (the model has \(count))"
        case .badSpec(let reason): "bad expert spec: \(reason)"
        case .badFile(let path, let reason): "\(path): \(reason)"
        case .insufficientCapacity(let needed, let available):
            "not enough worker memory for the placement: need \(needed / 1_000_000) MB, workers offer \(available / 1_000_000) MB"
        }
    }
}

/// Which worker hosts which routed expert of which layer, including replicas: a
/// versioned map (DESIGN invariant 3). Workers are referred to by index into `workers`.
public struct Placement: Sendable, Equatable {
    public var version: UInt64
    /// Worker names, in order.
    public private(set) var workers: [String]
    /// Hosts of each expert, primary first.
    public private(set) var hosts: [ExpertKey: [Int]]

    public init(version: UInt64, workers: [String], hosts: [ExpertKey: [Int]]) throws {
        var seen = Set<String>()
        for name in workers where !seen.insert(name).inserted { throw PlacementError.duplicateWorker(name) }
        self.version = version
        self.workers = workers
        self.hosts = hosts
    }

    /// Experts split into contiguous ranges: worker i hosts experts [i·E/W, (i+1)·E/W) of every MoE layer.
    public static func contiguous(workers: [String], description: ModelDescription, version: UInt64 = 1) throws -> Placement {
        let e = description.expertCount, w = workers.count
        return try strategy(workers: workers, description: description, version: version) { expert in expert * w / e }
    }

    /// Expert e goes to worker e mod W on every MoE layer.
    public static func roundRobin(workers: [String], description: ModelDescription, version: UInt64 = 1) throws -> Placement {
        try strategy(workers: workers, description: description, version: version) { $0 % workers.count }
    }

    private static func strategy(
        workers: [String], description: ModelDescription, version: UInt64, owner: (Int) -> Int
    ) throws -> Placement {
        guard !workers.isEmpty else { throw PlacementError.badSpec("no workers") }
        var hosts: [ExpertKey: [Int]] = [:]
        for key in description.allExperts { hosts[key] = [owner(key.expert)] }
        return try Placement(version: version, workers: workers, hosts: hosts)
    }

    /// The placement implied by what each worker says it holds (the coordinator's default).
    public static func fromWorkers(_ held: [(name: String, experts: [ExpertKey])], version: UInt64 = 1) throws -> Placement {
        var hosts: [ExpertKey: [Int]] = [:]
        for (index, worker) in held.enumerated() {
            for key in worker.experts { hosts[key, default: []].append(index) }
        }
        return try Placement(version: version, workers: held.map(\.name), hosts: hosts)
    }

    /// Checks every (layer, expert) of every MoE layer is hosted, and nothing else is named.
    public func validate(for description: ModelDescription) throws {
        let sparse = Set(description.sparseLayers)
        for key in hosts.keys {
            if !sparse.contains(key.layer) { throw PlacementError.layerNotSparse(layer: key.layer) }
            if key.expert < 0 || key.expert >= description.expertCount {
                throw PlacementError.expertOutOfRange(expert: key.expert, expertCount: description.expertCount)
            }
        }
        for key in description.allExperts where (hosts[key] ?? []).isEmpty {
            throw PlacementError.unhosted(layer: key.layer, expert: key.expert)
        }
    }

    /// The same assignments under another version number.
    public func withVersion(_ version: UInt64) -> Placement {
        var copy = self
        copy.version = version
        return copy
    }

    /// Whether both place every expert on the same named workers.
    public func sameAssignments(as other: Placement) -> Bool {
        let a = hosts.mapValues { Set($0.map { workers[$0] }) }
        let b = other.hosts.mapValues { Set($0.map { other.workers[$0] }) }
        return a == b
    }

    /// Experts hosted by worker `index`, sorted.
    public func experts(ofWorker index: Int) -> [ExpertKey] {
        hosts.compactMap { $0.value.contains(index) ? $0.key : nil }.sorted()
    }

    public func experts(ofWorker name: String) throws -> [ExpertKey] {
        guard let index = workers.firstIndex(of: name) else { throw PlacementError.unknownWorker(name) }
        return experts(ofWorker: index)
    }

    /// Workers hosting `key`, primary first.
    public func hostsOf(_ key: ExpertKey) -> [Int] { hosts[key] ?? [] }

    /// Share of (layer, expert) slots per worker (1/W each for an even placement).
    public var slotShare: [Double] {
        var counts = [Int](repeating: 0, count: workers.count)
        for workerList in hosts.values { for w in workerList { counts[w] += 1 } }
        let total = max(1, counts.reduce(0, +))
        return counts.map { Double($0) / Double(total) }
    }
}

// MARK: - Expert specs and placement files

/// Parses `0-7,9,12-15` into expert indices.
public func parseExpertRanges(_ text: String, limit: Int) throws -> [Int] {
    var result: [Int] = []
    for part in text.split(separator: ",") {
        let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
        guard (1...2).contains(bounds.count), let low = Int(bounds[0].trimmingCharacters(in: .whitespaces)),
              let high = Int(bounds.last!.trimmingCharacters(in: .whitespaces)), low <= high else {
            throw PlacementError.badSpec("'\(part)' is not a number or a range like 4-7")
        }
        for value in low...high {
            guard value >= 0 && value < limit else { throw PlacementError.expertOutOfRange(expert: value, expertCount: limit) }
            result.append(value)
        }
    }
    return Array(Set(result)).sorted()
}

/// What a worker hosts, from `--experts SPEC`:
/// `all`, `contiguous:I/N`, `round-robin:I/N` (the same split the coordinator computes
/// for N workers, this worker being number I, from 0), or ranges like `0-31,40` (those
/// experts of every MoE layer).
public func expertsForSpec(_ spec: String, description: ModelDescription) throws -> [ExpertKey] {
    let all = description.allExperts
    if spec == "all" { return all }
    for (prefix, build) in [("contiguous:", Placement.contiguous), ("round-robin:", Placement.roundRobin)] where spec.hasPrefix(prefix) {
        let fraction = spec.dropFirst(prefix.count).split(separator: "/")
        guard fraction.count == 2, let index = Int(fraction[0]), let count = Int(fraction[1]), count > 0, index >= 0, index < count else {
            throw PlacementError.badSpec("'\(spec)': expected \(prefix)I/N with 0 ≤ I < N")
        }
        let names = (0..<count).map { "worker-\($0)" }
        return try build(names, description, 1).experts(ofWorker: index)
    }
    let experts = try parseExpertRanges(spec, limit: description.expertCount)
    return description.sparseLayers.flatMap { layer in experts.map { ExpertKey(layer: layer, expert: $0) } }
}

/// The JSON placement file (documented in cluster/README.md):
///
///     { "version": 3,
///       "workers": ["w0", "w1"],
///       "shards": [ {"worker": "w0", "experts": "0-3"},
///                   {"worker": "w1", "experts": "4-7", "layers": "1-2"},
///                   {"worker": "w0", "experts": "4-7", "layers": "3"} ] }
///
/// `layers` defaults to every MoE layer; an expert listed for two workers is replicated.
public struct PlacementFile: Codable, Sendable {
    public struct Shard: Codable, Sendable {
        public var worker: String
        public var experts: String
        public var layers: String?

        public init(worker: String, experts: String, layers: String? = nil) {
            self.worker = worker
            self.experts = experts
            self.layers = layers
        }
    }

    public var version: UInt64
    public var workers: [String]
    public var shards: [Shard]

    public init(version: UInt64, workers: [String], shards: [Shard]) {
        self.version = version
        self.workers = workers
        self.shards = shards
    }

    public static func load(path: String, description: ModelDescription) throws -> Placement {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PlacementError.badFile(path: path, reason: "cannot read the file")
        }
        let file: PlacementFile
        do {
            file = try JSONDecoder().decode(PlacementFile.self, from: data)
        } catch {
            throw PlacementError.badFile(path: path, reason: "not a placement JSON file (\(error))")
        }
        return try file.placement(description: description, path: path)
    }

    public func placement(description: ModelDescription, path: String = "placement") throws -> Placement {
        var hosts: [ExpertKey: [Int]] = [:]
        for shard in shards {
            guard let worker = workers.firstIndex(of: shard.worker) else { throw PlacementError.unknownWorker(shard.worker) }
            let layers = try shard.layers.map { try parseExpertRanges($0, limit: description.layerCount) } ?? description.sparseLayers
            let experts = try parseExpertRanges(shard.experts, limit: description.expertCount)
            for layer in layers {
                guard description.sparseLayers.contains(layer) else { throw PlacementError.layerNotSparse(layer: layer) }
                for expert in experts {
                    let key = ExpertKey(layer: layer, expert: expert)
                    if !(hosts[key] ?? []).contains(worker) { hosts[key, default: []].append(worker) }
                }
            }
        }
        let placement = try Placement(version: version, workers: workers, hosts: hosts)
        try placement.validate(for: description)
        return placement
    }
}
