import Foundation
import JindouModel
import JindouPlacement

// EPLB-style replication: mirrors deepseek-ai/EPLB `eplb.py`, global policy
// (`rebalance_experts` with num_groups = num_nodes = 1):
//   - `replicate_experts`: give each extra slot to the expert with the highest load per
//     copy (weight / logcnt), one slot at a time;
//   - `balanced_packing`: sort the copies by load per copy, heaviest first, and put each on
//     the least-loaded pack (worker) that still has a free slot; every pack gets exactly
//     slots / packs items.
// Jindou additions: a copy never joins a worker already holding a copy of the same expert
// while another worker with room does not (EPLB allows it; on one worker it buys nothing),
// an optional memory cap in experts per worker and layer, and a second packing objective
// (expected activated experts per worker per step).

/// Which experts each worker hosts, per layer: `hosts[layer][expert]` lists workers, primary
/// first. Tokens of an expert are split evenly across its copies.
public struct ReplicaLayout: Sendable, Equatable {
    public let workers: Int
    public var hosts: [[[Int]]]

    public init(workers: Int, hosts: [[[Int]]]) {
        self.workers = workers
        self.hosts = hosts
    }

    public var layers: Int { hosts.count }
    public var experts: Int { hosts.first?.count ?? 0 }

    /// Worker i hosts experts [i·E/W, (i+1)·E/W) of every layer: `Placement.contiguous`.
    public static func contiguous(experts: Int, layers: Int, workers: Int) -> ReplicaLayout {
        let layer = (0..<experts).map { [$0 * workers / experts] }
        return ReplicaLayout(workers: workers, hosts: [[[Int]]](repeating: layer, count: layers))
    }

    /// Copies hosted by each worker in `layer`.
    public func slotsUsed(layer: Int) -> [Int] {
        var used = [Int](repeating: 0, count: workers)
        for copies in hosts[layer] { for w in copies { used[w] += 1 } }
        return used
    }

    /// The layout as a `Placement` the coordinator can apply: trace layer i is model layer
    /// `modelLayers[i]` (the model's sparse layers, in order).
    public func placement(workerNames: [String], modelLayers: [Int], version: UInt64) throws -> Placement {
        guard workerNames.count == workers else {
            throw PlacementError.badSpec("layout has \(workers) workers, \(workerNames.count) names given")
        }
        guard modelLayers.count == layers else {
            throw PlacementError.badSpec("layout has \(layers) layers, the model has \(modelLayers.count) MoE layers")
        }
        var result: [ExpertKey: [Int]] = [:]
        for (i, layer) in modelLayers.enumerated() {
            for (expert, copies) in hosts[i].enumerated() { result[ExpertKey(layer: layer, expert: expert)] = copies }
        }
        return try Placement(version: version, workers: workerNames, hosts: result)
    }

    /// The layout as a placement file (`PlacementFile`, cluster/README.md) for
    /// `jindoud coordinator --placement`. Shards are listed copy rank by rank (all primary
    /// copies first), so reading the file back keeps every expert's primary worker.
    public func placementFile(workerNames: [String], modelLayers: [Int], version: UInt64) throws -> PlacementFile {
        _ = try placement(workerNames: workerNames, modelLayers: modelLayers, version: version)  // checks the shape
        var shards: [PlacementFile.Shard] = []
        let maxCopies = hosts.flatMap { $0.map(\.count) }.max() ?? 0
        for rank in 0..<maxCopies {
            for (i, layer) in modelLayers.enumerated() {
                var experts = [[Int]](repeating: [], count: workers)
                for (expert, copies) in hosts[i].enumerated() where rank < copies.count { experts[copies[rank]].append(expert) }
                for (w, list) in experts.enumerated() where !list.isEmpty {
                    shards.append(PlacementFile.Shard(worker: workerNames[w], experts: formatExpertRanges(list), layers: String(layer)))
                }
            }
        }
        return PlacementFile(version: version, workers: workerNames, shards: shards)
    }

    /// The layout of an existing placement (e.g. the coordinator's current one).
    public init(placement: Placement, modelLayers: [Int], experts: Int) throws {
        workers = placement.workers.count
        hosts = try modelLayers.map { layer in
            try (0..<experts).map { expert in
                let copies = placement.hostsOf(ExpertKey(layer: layer, expert: expert))
                guard !copies.isEmpty else { throw PlacementError.unhosted(layer: layer, expert: expert) }
                return copies
            }
        }
    }
}

/// A planned layout with the planner's own prediction on the load it planned from.
public struct ReplicationPlan: Sendable {
    public var layout: ReplicaLayout
    /// Copies per expert (`[layer][expert]`).
    public var copies: [[Int]]
    /// Predicted max/mean worker tokens per layer on the planning load.
    public var predictedMaxOverMean: [Double]
    /// Σ_layers max / Σ_layers mean on the planning load.
    public var predictedOverallMaxOverMean: Double
}

/// Computes replicated placements from measured per-expert load.
public struct ReplicationPlanner: Sendable {
    /// What packing balances.
    public enum Objective: String, Sendable, CaseIterable {
        /// Tokens per worker (EPLB).
        case tokens
        /// Expected distinct experts a worker must read per step (memory-bound decode):
        /// copies only where a single copy would exceed a worker's mean share of tokens,
        /// packed by their probability of being activated in a step.
        case activatedExperts = "activated"
    }

    public var workers: Int
    /// Extra slots per layer as a fraction of the expert count (0.25 → E + 25 %).
    public var extraSlotFraction: Double
    /// At most this many experts per worker and layer (memory), if set.
    public var memoryCapExperts: Int?
    public var objective: Objective

    public init(workers: Int, extraSlotFraction: Double, memoryCapExperts: Int? = nil, objective: Objective = .tokens) {
        precondition(workers >= 1 && extraSlotFraction >= 0)
        self.workers = workers
        self.extraSlotFraction = extraSlotFraction
        self.memoryCapExperts = memoryCapExperts
        self.objective = objective
    }

    /// Slots per worker and layer: ⌈E·(1 + extra)/W⌉, every worker the same (as EPLB
    /// requires), lowered to the memory cap.
    public func slotsPerWorker(experts: Int) throws -> Int {
        let wanted = (Double(experts) * (1 + extraSlotFraction) - 1e-9).rounded(.up)
        guard wanted.isFinite, wanted < Double(1 << 40) else {
            throw PlacementError.insufficientCapacity(needed: UInt64(experts), available: 0)
        }
        var slots = Int(wanted)
        slots = (slots + workers - 1) / workers
        if let cap = memoryCapExperts { slots = min(slots, cap) }
        guard slots * workers >= experts else {
            throw PlacementError.insufficientCapacity(needed: UInt64(experts), available: UInt64(slots * workers))
        }
        return slots
    }

    /// `replicate_experts`: copies per expert so the max load per copy is minimal. An
    /// expert gets at most `maxCopies` copies (one per worker; EPLB has no such bound).
    public static func replicate(load: [Double], slots: Int, maxCopies: Int = .max) -> [Int] {
        var copies = [Int](repeating: 1, count: load.count)
        for _ in load.count..<max(load.count, slots) {
            var best = -1
            var bestLoad = -Double.infinity
            for (e, l) in load.enumerated() where copies[e] < maxCopies && l / Double(copies[e]) > bestLoad {
                best = e
                bestLoad = l / Double(copies[e])
            }
            guard best >= 0 else { break }
            copies[best] += 1
        }
        return copies
    }

    /// For the activated-experts objective: every extra copy is one more expert a worker
    /// reads per step, so replicate only while some copy carries more than a worker's mean
    /// share of tokens (tokens cannot balance otherwise) and leave the other slots free.
    public static func replicateOnlyOverweight(load: [Double], slots: Int, workers: Int) -> [Int] {
        var copies = [Int](repeating: 1, count: load.count)
        let target = load.reduce(0, +) / Double(workers)
        for _ in load.count..<max(load.count, slots) {
            var best = 0
            var bestLoad = -Double.infinity
            for (e, l) in load.enumerated() where copies[e] < workers && l / Double(copies[e]) > bestLoad {
                best = e
                bestLoad = l / Double(copies[e])
            }
            guard bestLoad > target else { break }
            copies[best] += 1
        }
        return copies
    }

    /// Plans from `load[layer][expert]` (tokens over a window of `steps` steps).
    public func plan(load: [[Double]], steps: Int) throws -> ReplicationPlan {
        let experts = load.first?.count ?? 0
        let perWorker = try slotsPerWorker(experts: experts)
        let slots = min(perWorker * workers, experts * workers)  // more copies than workers buys nothing
        var hosts: [[[Int]]] = []
        var allCopies: [[Int]] = []
        var predicted: [Double] = []
        var sumMax = 0.0, sumMean = 0.0
        for layerLoad in load {
            let copies = objective == .tokens
                ? Self.replicate(load: layerLoad, slots: slots, maxCopies: workers)
                : Self.replicateOnlyOverweight(load: layerLoad, slots: slots, workers: workers)
            let (layerHosts, tokens) = pack(load: layerLoad, copies: copies, perWorker: perWorker, steps: steps)
            hosts.append(layerHosts)
            allCopies.append(layerHosts.map(\.count))
            let mean = tokens.reduce(0, +) / Double(workers)
            let maximum = tokens.max() ?? 0
            predicted.append(mean > 0 ? maximum / mean : 1)
            sumMax += maximum
            sumMean += mean
        }
        return ReplicationPlan(layout: ReplicaLayout(workers: workers, hosts: hosts), copies: allCopies,
                               predictedMaxOverMean: predicted,
                               predictedOverallMaxOverMean: sumMean > 0 ? sumMax / sumMean : 1)
    }

    /// `balanced_packing` of copies onto workers, heaviest first. Returns hosts per expert
    /// (primary = first copy placed) and tokens per worker.
    func pack(load: [Double], copies: [Int], perWorker: Int, steps: Int) -> ([[Int]], [Double]) {
        struct Copy { var expert: Int; var tokens: Double; var activation: Double }
        var items: [Copy] = []
        for (e, c) in copies.enumerated() {
            let share = load[e] / Double(c)
            // Poisson estimate of P(this copy receives ≥ 1 token in a step).
            let activation = 1 - exp(-share / Double(max(1, steps)))
            for _ in 0..<min(c, workers) { items.append(Copy(expert: e, tokens: share, activation: activation)) }
        }
        let primary: (Copy) -> Double = objective == .activatedExperts ? { $0.activation } : { $0.tokens }
        let secondary: (Copy) -> Double = objective == .activatedExperts ? { $0.tokens } : { $0.activation }
        items.sort { (primary($0), secondary($0), -$0.expert) > (primary($1), secondary($1), -$1.expert) }
        var used = [Int](repeating: 0, count: workers)
        var weight = [Double](repeating: 0, count: workers)
        var tieWeight = [Double](repeating: 0, count: workers)
        var tokens = [Double](repeating: 0, count: workers)
        var hosts = [[Int]](repeating: [], count: load.count)
        for item in items {
            var best = -1
            var bestAvoids = false
            for w in 0..<workers where used[w] < perWorker {
                let avoids = !hosts[item.expert].contains(w)
                if best < 0 || (avoids && !bestAvoids)
                    || (avoids == bestAvoids && (weight[w], tieWeight[w]) < (weight[best], tieWeight[best])) {
                    best = w
                    bestAvoids = avoids
                }
            }
            precondition(best >= 0, "packing ran out of slots: slots per worker too small")
            used[best] += 1
            weight[best] += primary(item)
            tieWeight[best] += secondary(item)
            tokens[best] += item.tokens
            if !hosts[item.expert].contains(best) { hosts[item.expert].append(best) }
        }
        return (hosts, tokens)
    }
}
