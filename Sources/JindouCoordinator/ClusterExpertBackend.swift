import JindouBalancing
import JindouModel
import JindouPlacement
import JindouRouting
import JindouWire
import Metrics
import Synchronization

/// The coordinator's `ExpertBackend`: at every MoE layer it splits the routing by the
/// live workers that host each chosen expert, sends every worker its tokens concurrently
/// (dispatch), and adds up what comes back (combine).
///
/// - Replicas share an expert's tokens by each step's load (`ReplicaChoice.leastLoaded`,
///   the default): a step waits for its busiest worker, so a layer's tokens of replicated
///   experts go to the copies whose workers this layer's other tokens leave lightest — or in
///   turn (`.rotate`: the n-th token routed to an expert goes to its live copy n mod copies,
///   an even split per expert that ignores the rest of the step).
/// - Failover: if a worker fails mid-layer it is marked down and its share is re-split
///   over the remaining live replicas; only an expert with no live host fails the step,
///   naming that (layer, expert).
/// - One routing table per step (`step`), so placement switches land between steps.
/// Partial sums are added in worker-name order, so results are deterministic; they equal
/// the single-process engine up to float re-association.
public struct ClusterExpertBackend: ExpertBackend {
    public let pool: WorkerPool
    public let routing: RoutingState
    public let statistics: LoadStatistics
    public let hiddenSize: Int
    public let wireDType: WireDType
    /// Serving-time balancing bias (`--balance-bias`); nil routes exactly as the model does.
    public let servingBias: ServingBias?
    /// `--record-routing`: the served routing, written as a trace.
    public let recorder: RoutingRecorder?
    /// How a layer's tokens of a replicated expert are split over its live copies.
    public let replicaChoice: ReplicaChoice

    @TaskLocal static var stepTable: RoutingTable?
    @TaskLocal static var stepRouting: RoutingRecorder.Step?
    /// Whose turn it is among each expert's copies.
    private let rotation = Rotation()

    /// One counter per (layer, expert): an expert's n-th token goes to its live copy
    /// n mod copies, so copies split an expert's tokens exactly evenly whatever the batch
    /// shapes. (Rotating per layer call instead aliases with periodic workloads: a prompt
    /// served over and over sends a hot expert's tokens to the same copy every time.)
    final class Rotation: Sendable {
        private let turns = Mutex<[Int: [UInt32]]>([:])
        /// Takes the layer's counters out (so updating them copies nothing); `put` returns them.
        func take(layer: Int, experts: Int) -> [UInt32] {
            turns.withLock { $0.removeValue(forKey: layer) } ?? [UInt32](repeating: 0, count: experts)
        }
        func put(layer: Int, _ value: [UInt32]) { turns.withLock { $0[layer] = value } }
    }

    public init(pool: WorkerPool, routing: RoutingState, statistics: LoadStatistics, hiddenSize: Int, wireDType: WireDType = .f32,
                servingBias: ServingBias? = nil, recorder: RoutingRecorder? = nil, replicaChoice: ReplicaChoice = .leastLoaded) {
        self.replicaChoice = replicaChoice
        self.servingBias = servingBias
        self.recorder = recorder
        self.pool = pool
        self.routing = routing
        self.statistics = statistics
        self.hiddenSize = hiddenSize
        self.wireDType = wireDType
    }

    public func step<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result {
        let table = routing.beginStep()
        defer { routing.endStep(table.placement.version) }
        guard let recorder else { return try await Self.$stepTable.withValue(table) { try await body() } }
        let step = RoutingRecorder.Step()
        let result = try await Self.$stepTable.withValue(table) { try await Self.$stepRouting.withValue(step) { try await body() } }
        recorder.finish(step)
        return result
    }

    /// Experts are computed by workers across a network: micro-batches can overlap them.
    public var isRemote: Bool { true }

    public func route(layer: Int, router: Router, hidden: UnsafePointer<Float>, tokens: Int,
                      expertsPerToken: (Int) -> ExpertsPerToken) -> RoutingDecision {
        guard let servingBias else { return router.route(hidden: hidden, tokens: tokens, expertsPerToken: expertsPerToken) }
        return servingBias.route(layer: layer, router: router, hidden: hidden, tokens: tokens, expertsPerToken: expertsPerToken)
    }

    /// One worker's share of a layer: which batch tokens it gets and their routing.
    public struct Share: Sendable {
        public var tokens: [Int] = []
        public var routing = RoutingDecision()
    }

    /// Splits a layer's routing (tokens `subset`, default all) by live worker.
    public func split(layer: Int, routing decision: RoutingDecision, table: RoutingTable, failed: Set<String> = [],
                      subset: [Int]? = nil) throws -> [String: Share] {
        var shares: [String: Share] = [:]
        var perWorker: [String: ([Int32], [Float])] = [:]
        let tokens = subset ?? Array(0..<decision.tokenCount)
        // The worker of every (token, choice), by choice index into `decision.experts`.
        var workerOf = [String](repeating: "", count: decision.experts.count)
        var hostsOf: [Int: [String]] = [:]
        func hosts(_ expert: Int) throws -> [String] {
            if let known = hostsOf[expert] { return known }
            let live = table.liveHosts(ExpertKey(layer: layer, expert: expert), excluding: failed)
            guard !live.isEmpty else { throw ClusterError.expertUnavailable(layer: layer, expert: expert) }
            hostsOf[expert] = live
            return live
        }
        switch replicaChoice {
        case .rotate:
            var turns = rotation.take(layer: layer, experts: statistics.expertCount)
            defer { rotation.put(layer: layer, turns) }
            for t in tokens {
                for i in decision.offsets[t]..<decision.offsets[t + 1] {
                    let expert = Int(decision.experts[i])
                    let live = try hosts(expert)
                    var worker = live[0]
                    if live.count > 1 {
                        worker = live[Int(turns[expert]) % live.count]
                        turns[expert] &+= 1
                    }
                    workerOf[i] = worker
                }
            }
        case .leastLoaded:
            // Choices per expert (in token order), then the split ReplicaChoice computes.
            var choices: [Int: [Int]] = [:]
            for t in tokens {
                for i in decision.offsets[t]..<decision.offsets[t + 1] { choices[Int(decision.experts[i]), default: []].append(i) }
            }
            let experts = choices.keys.sorted()
            var names: [String] = [], index: [String: Int] = [:]
            var counts: [Int] = [], hostIndices: [[Int]] = []
            for expert in experts {
                let live = try hosts(expert)
                for name in live where index[name] == nil {
                    index[name] = names.count
                    names.append(name)
                }
                counts.append(choices[expert]!.count)
                hostIndices.append(live.map { index[$0]! })
            }
            var load = [Int](repeating: 0, count: names.count)
            let given = ReplicaChoice.split(counts: counts, hosts: hostIndices, tokens: &load)
            for (k, expert) in experts.enumerated() {
                let list = choices[expert]!, live = hostsOf[expert]!
                guard !given[k].isEmpty else {
                    for i in list { workerOf[i] = live[0] }
                    continue
                }
                var next = 0
                for (j, n) in given[k].enumerated() {
                    for i in list[next..<(next + n)] { workerOf[i] = live[j] }
                    next += n
                }
            }
        }
        for t in tokens {
            perWorker.removeAll(keepingCapacity: true)
            for i in decision.offsets[t]..<decision.offsets[t + 1] {
                perWorker[workerOf[i], default: ([], [])].0.append(decision.experts[i])
                perWorker[workerOf[i], default: ([], [])].1.append(decision.weights[i])
            }
            for (worker, choice) in perWorker {
                shares[worker, default: Share()].tokens.append(t)
                shares[worker, default: Share()].routing.append(experts: choice.0, weights: choice.1)
            }
        }
        return shares
    }

    public func routedExperts(layer: Int, hidden: [Float], tokenCount: Int, routing decision: RoutingDecision) async throws -> [Float] {
        let table = Self.stepTable ?? routing.table
        Self.stepRouting?.record(layer: layer, decision)
        let h = hiddenSize
        var output = [Float](repeating: 0, count: tokenCount * h)
        var failed = Set<String>()
        var pending: [Int]? = nil  // tokens still to compute (nil: all)
        // What is still to compute: at first every choice; after a worker fails, only the
        // (token, expert) choices it had — the other workers' parts are already summed.
        var remaining = decision
        var served: [(String, LoadStatistics.WorkerCounts)] = []
        // Distinct experts per worker share: one bit per expert, reused across shares.
        var seen = [UInt64](repeating: 0, count: (statistics.expertCount + 63) / 64)
        while true {
            let shares = try split(layer: layer, routing: remaining, table: table, failed: failed, subset: pending)
            var results: [(String, Share, Exchange)] = []
            await withTaskGroup(of: (String, Share, Exchange).self) { group in
                for (worker, share) in shares {
                    group.addTask { (worker, share, await self.exchange(worker: worker, layer: layer, share: share, hidden: hidden, table: table)) }
                }
                for await result in group { results.append(result) }
            }
            var retry: [Int: (experts: [Int32], weights: [Float])] = [:]
            for (worker, share, exchange) in results.sorted(by: { $0.0 < $1.0 }) {
                switch exchange.result {
                case .success(let partial):
                    output.withUnsafeMutableBufferPointer { out in
                        partial.withUnsafeBufferPointer { p in
                            for (row, t) in share.tokens.enumerated() {
                                for i in 0..<h { out[t * h + i] += p[row * h + i] }
                            }
                        }
                    }
                    for i in seen.indices { seen[i] = 0 }
                    var activated = 0
                    for e in share.routing.experts {
                        let (word, bit) = (Int(e) >> 6, UInt64(1) << UInt64(Int(e) & 63))
                        if seen[word] & bit == 0 { seen[word] |= bit; activated += 1 }
                    }
                    var counts = LoadStatistics.WorkerCounts()
                    counts.assignments = share.routing.assignmentCount
                    counts.dispatches = 1
                    counts.activatedExperts = activated
                    counts.bytesSent = exchange.bytesSent
                    counts.bytesReceived = exchange.bytesReceived
                    counts.dispatchNanoseconds = exchange.nanoseconds
                    counts.computeNanoseconds = exchange.computeNanoseconds
                    served.append((worker, counts))
                case .failure(let error):
                    // A worker that cannot answer is taken out of routing; its tokens are
                    // retried on the other replicas. Refusals of the request itself are not retried.
                    guard case ClusterError.workerUnavailable = error else { throw error }
                    failed.insert(worker)
                    routing.markDown(worker)
                    for (row, t) in share.tokens.enumerated() {
                        let range = share.routing.offsets[row]..<share.routing.offsets[row + 1]
                        retry[t, default: ([], [])].experts += share.routing.experts[range]
                        retry[t, default: ([], [])].weights += share.routing.weights[range]
                    }
                }
            }
            if retry.isEmpty { break }
            remaining = RoutingDecision()
            for t in 0..<tokenCount {
                // Sorted by expert, as a routing decision keeps them (two failed workers' parts interleave).
                let pairs = zip(retry[t]?.experts ?? [], retry[t]?.weights ?? []).sorted { $0.0 < $1.0 }
                remaining.append(experts: pairs.map(\.0), weights: pairs.map(\.1))
            }
            pending = retry.keys.sorted()
        }
        statistics.record(layer: layer, experts: decision.experts, tokens: tokenCount, workers: served)
        return output
    }

    /// One worker's answer to a dispatch and what it cost.
    struct Exchange: Sendable {
        var result: Result<[Float], Error>
        var bytesSent: UInt64 = 0
        var bytesReceived: UInt64 = 0
        var nanoseconds: UInt64 = 0
        /// The worker's own compute time for it (from the COMBINE header).
        var computeNanoseconds: UInt64 = 0
    }

    func exchange(worker: String, layer: Int, share: Share, hidden: [Float], table: RoutingTable) async -> Exchange {
        let h = hiddenSize
        var rows = [Float]()
        rows.reserveCapacity(share.tokens.count * h)
        for t in share.tokens { rows.append(contentsOf: hidden[(t * h)..<((t + 1) * h)]) }
        let message = DispatchMessage(
            requestID: pool.nextRequestID(), layer: layer, placementVersion: table.placement.version,
            hiddenSize: h, dtype: wireDType, routing: share.routing, hidden: rows)
        let start = ContinuousClock.now
        var cost = Exchange(result: .success([]))
        do {
            let frame = message.frame()
            cost.bytesSent = UInt64(frame.payload.readableBytes)
            let reply = try await pool.exchange(worker, frame)
            let nanoseconds = (ContinuousClock.now - start).nanoseconds
            cost.nanoseconds = UInt64(max(0, nanoseconds))
            cost.bytesReceived = UInt64(reply.payload.readableBytes)
            Metrics.Timer(label: "jindou_dispatch_seconds", dimensions: [("worker", worker)]).recordNanoseconds(nanoseconds)
            let combine: CombineMessage
            do {
                combine = try CombineMessage(frame: reply)
            } catch {
                throw ClusterError.badReply(worker: worker, reason: "\(error)")
            }
            guard combine.requestID == message.requestID, combine.output.count == share.tokens.count * h else {
                throw ClusterError.badReply(
                    worker: worker,
                    reason: "combine for request \(combine.requestID) with \(combine.output.count) values, expected request \(message.requestID) with \(share.tokens.count * h)")
            }
            cost.computeNanoseconds = combine.computeNanoseconds
            cost.result = .success(combine.output)
        } catch {
            cost.result = .failure(error)
        }
        return cost
    }
}
