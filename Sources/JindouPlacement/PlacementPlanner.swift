import JindouModel

/// Computes placements for a changing cluster: every (layer, expert) on `replicas`
/// workers, within each worker's memory, moving as few experts as possible.
///
/// - Stability: copies on still-eligible workers stay where they are, except what must
///   move so every worker holds its share (its share of all copies is proportional to its
///   capacity), so a joining worker picks up about 1/W of the experts and nothing else moves.
/// - With measured per-expert load (`rebalance`), copies are instead packed heaviest-first
///   onto the least-loaded worker with room (greedy LPT), minimising the most loaded
///   worker's share; the planner reports the predicted max/mean worker load.
public struct PlacementPlanner: Sendable {
    public struct Worker: Sendable, Equatable {
        public var name: String
        /// Bytes of memory this worker offers for experts.
        public var capacityBytes: UInt64

        public init(name: String, capacityBytes: UInt64) {
            self.name = name
            self.capacityBytes = capacityBytes
        }
    }

    public let experts: [ExpertKey]
    public let expertBytes: UInt64

    public init(experts: [ExpertKey], expertBytes: UInt64) {
        self.experts = experts.sorted()
        self.expertBytes = max(1, expertBytes)
    }

    public init(description: ModelDescription, bytesPerWeight: Int) {
        self.init(experts: description.allExperts,
                  expertBytes: UInt64(3 * description.hiddenSize * description.moeIntermediateSize * bytesPerWeight))
    }

    /// A placement over `workers` with `replicas` copies of each expert (fewer if there are
    /// fewer workers), keeping as much of `current` as balance allows.
    public func plan(workers: [Worker], replicas: Int, current: Placement?, version: UInt64,
                     load: [ExpertKey: Double]? = nil) throws -> Placement {
        guard !workers.isEmpty else { throw PlacementError.badSpec("no workers to place experts on") }
        let copies = max(1, min(replicas, workers.count))
        let names = workers.map(\.name)
        let capacity = workers.map { $0.capacityBytes / expertBytes }  // slots
        let totalSlots = experts.count * copies
        guard capacity.reduce(0, +) >= UInt64(totalSlots) else {
            throw PlacementError.insufficientCapacity(
                needed: UInt64(totalSlots) * expertBytes, available: workers.reduce(0) { $0 + $1.capacityBytes })
        }
        var hosts: [ExpertKey: [Int]] = [:]
        var used = [Int](repeating: 0, count: workers.count)
        var weight = [Double](repeating: 0, count: workers.count)

        if let load {
            // Heaviest first onto the worker with room that is least loaded in the expert's
            // layer (LPT per layer: every MoE layer waits for its busiest worker), ties to
            // the least loaded overall.
            let order = experts.sorted { (load[$0] ?? 0, $1) > (load[$1] ?? 0, $0) }
            var layerWeight: [Int: [Double]] = [:]
            for key in order {
                let share = (load[key] ?? 0) / Double(copies)
                var inLayer = layerWeight[key.layer] ?? [Double](repeating: 0, count: workers.count)
                var chosen: [Int] = []
                for _ in 0..<copies {
                    let candidates = workers.indices.filter { !chosen.contains($0) && UInt64(used[$0]) < capacity[$0] }
                    guard let best = candidates.min(by: {
                        (inLayer[$0], weight[$0], used[$0], $0) < (inLayer[$1], weight[$1], used[$1], $1)
                    }) else {
                        throw PlacementError.insufficientCapacity(needed: expertBytes, available: 0)
                    }
                    chosen.append(best)
                    used[best] += 1
                    weight[best] += share
                    inLayer[best] += share
                }
                layerWeight[key.layer] = inLayer
                hosts[key] = chosen.sorted()
            }
            return try Placement(version: version, workers: names, hosts: hosts)
        }

        // Fair share of copies per worker, proportional to capacity.
        let capacityTotal = Double(workers.reduce(0) { $0 + $1.capacityBytes })
        var target = workers.map { Int((Double(totalSlots) * Double($0.capacityBytes) / capacityTotal).rounded(.down)) }
        var remainder = totalSlots - target.reduce(0, +)
        for i in workers.indices.sorted(by: { (workers[$0].capacityBytes, $1) > (workers[$1].capacityBytes, $0) }) where remainder > 0 {
            target[i] += 1
            remainder -= 1
        }
        for i in workers.indices { target[i] = min(target[i], Int(capacity[i])) }

        // Keep current copies on eligible workers, up to each worker's target.
        if let current {
            for key in experts {
                for old in current.hostsOf(key) {
                    guard let index = names.firstIndex(of: current.workers[old]) else { continue }
                    if (hosts[key]?.count ?? 0) < copies && used[index] < target[index] && !(hosts[key] ?? []).contains(index) {
                        hosts[key, default: []].append(index)
                        used[index] += 1
                    }
                }
            }
        }
        // Fill the rest: the worker furthest below its target, then with most room.
        for key in experts {
            while (hosts[key]?.count ?? 0) < copies {
                let candidates = workers.indices.filter { !(hosts[key] ?? []).contains($0) && UInt64(used[$0]) < capacity[$0] }
                guard let best = candidates.min(by: {
                    (used[$0] - target[$0], used[$0], $0) < (used[$1] - target[$1], used[$1], $1)
                }) else {
                    throw PlacementError.insufficientCapacity(needed: expertBytes, available: 0)
                }
                hosts[key, default: []].append(best)
                used[best] += 1
            }
            hosts[key]!.sort()
        }
        return try Placement(version: version, workers: names, hosts: hosts)
    }

    /// What a step waits for under `placement`: Σ over layers of the busiest worker's load
    /// in that layer ÷ Σ over layers of the mean worker load (copies split a key's load
    /// evenly). 1 is perfect balance in every layer.
    public static func stepMaxOverMean(_ placement: Placement, load: [ExpertKey: Double]) -> Double {
        var perLayer: [Int: [Double]] = [:]
        for (key, hosts) in placement.hosts where !hosts.isEmpty {
            var totals = perLayer[key.layer] ?? [Double](repeating: 0, count: placement.workers.count)
            for h in hosts { totals[h] += (load[key] ?? 0) / Double(hosts.count) }
            perLayer[key.layer] = totals
        }
        var sumMax = 0.0, sumMean = 0.0
        for totals in perLayer.values {
            sumMax += totals.max() ?? 0
            sumMean += totals.reduce(0, +) / Double(max(1, totals.count))
        }
        return sumMean > 0 ? sumMax / sumMean : 0
    }

    /// What changes between two placements, per worker: experts added and removed.
    public static func diff(from old: Placement?, to new: Placement) -> [(worker: String, added: [ExpertKey], removed: [ExpertKey])] {
        var names = new.workers
        for name in old?.workers ?? [] where !names.contains(name) { names.append(name) }
        return names.map { name in
            let before = Set((try? old?.experts(ofWorker: name)) ?? [])
            let after = Set((try? new.experts(ofWorker: name)) ?? [])
            return (name, after.subtracting(before).sorted(), before.subtracting(after).sorted())
        }
    }
}
