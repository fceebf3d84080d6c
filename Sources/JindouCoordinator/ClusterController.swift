import Foundation
import JindouAdmin
import JindouBalancing
import JindouModel
import JindouPlacement
import JindouRouting
import JindouTransport
import JindouWire
import Logging
import Metrics
import ServiceLifecycle

/// The control plane: who the workers are, which placement is active, and every change to
/// it, applied live (DESIGN invariant 3).
///
/// A change (a worker joins or is gone, `scale`, `drain`, `rebalance`) produces a new
/// placement version that is *staged*: workers load their newly assigned experts while
/// still serving the old ones; once every worker holds its part, the new version becomes
/// active for the next step; the old shards are released only after the last step that
/// used the old version has finished. No request in flight sees a half-applied change.
public actor ClusterController {
    public struct Settings: Sendable {
        public var heartbeat: Duration
        public var unreachableAfter: Duration
        public var goneAfter: Duration
        /// Copies of each expert; nil keeps the restored value (else 1).
        public var replicas: Int?
        /// Seconds of routing statistics the load report, metrics and serving bias use (`--load-window`).
        public var loadWindowSeconds: Int
        /// Serving-time balancing bias (`--balance-bias`); nil: off.
        public var servingBias: ServingBiasSettings?

        public init(heartbeat: Duration = .seconds(1), unreachableAfter: Duration = .seconds(3),
                    goneAfter: Duration = .seconds(60), replicas: Int? = nil, loadWindowSeconds: Int = 60,
                    servingBias: ServingBiasSettings? = nil) {
            self.loadWindowSeconds = loadWindowSeconds
            self.servingBias = servingBias
            self.heartbeat = heartbeat
            self.unreachableAfter = unreachableAfter
            self.goneAfter = goneAfter
            self.replicas = replicas
        }
    }

    struct Member {
        var name: String
        var address: Endpoint
        var cores: Int
        var memoryBytes: UInt64
        var origin: String
        var draining: Bool
        var lastContact: ContinuousClock.Instant?
        var state: String
        var loaded: Set<ExpertKey>
        var loadedBytes: UInt64
        var updating = false
        var pinging = false
        /// A worker without a local checkpoint: its fetch, from its last heartbeat.
        var fetch: FetchStatus?
        /// A dispatch to it failed; unreachable until a ping succeeds.
        var markedDown = false

        var record: MemberRecord {
            MemberRecord(name: name, address: address.description, cores: cores, memoryBytes: memoryBytes, origin: origin, draining: draining)
        }
    }

    public let description: ModelDescription
    public let fingerprint: String
    public let pool: WorkerPool
    public let routing: RoutingState
    public let statistics: LoadStatistics
    /// The serving-time bias the dispatch path routes with (nil unless `--balance-bias`).
    public let servingBias: ServingBias?
    private var lastBiasUpdate: ContinuousClock.Instant?
    private let servedExpertsGauge = Gauge(label: "jindou_experts_served")
    private let totalExpertsGauge = Gauge(label: "jindou_experts_total")
    private var lastBiasPersist = ContinuousClock.now
    private var persistedBias: [Int: [Float]] = [:]
    let settings: Settings
    let expertBytes: UInt64
    let logger: Logger
    private let log: ClusterStateLog?
    private var members: [String: Member] = [:]
    private var order: [String] = []
    public private(set) var active: Placement
    private var staged: Placement?
    private var retiring: Placement?
    private var replicas: Int
    private var pinned: Bool
    private var needsReplan = false
    /// Live workers in the last published routing table (to notice data-path failures).
    private var publishedLive = Set<String>()

    public init(description: ModelDescription, fingerprint: String, pool: WorkerPool, expertBytes: UInt64,
                settings: Settings, stateDirectory: String?, servingBias: ServingBias? = nil, logger: Logger) throws {
        self.servingBias = servingBias
        self.description = description
        self.fingerprint = fingerprint
        self.pool = pool
        self.expertBytes = expertBytes
        self.settings = settings
        self.logger = logger
        statistics = LoadStatistics(expertCount: description.expertCount, sparseLayers: description.sparseLayers,
                                    windowSeconds: max(1, settings.loadWindowSeconds))
        replicas = settings.replicas ?? 1
        pinned = false
        var restoredSettings = false
        var restoredMembers: [MemberRecord] = []
        var restoredPlacement: PlacementRecord?
        var restoredBias: [String: [Float]] = [:]
        if let stateDirectory {
            let (log, records) = try ClusterStateLog.open(directory: stateDirectory)
            self.log = log
            for record in records {
                switch record {
                case .member(let m):
                    restoredMembers.removeAll { $0.name == m.name }
                    restoredMembers.append(m)
                case .memberRemoved(let name): restoredMembers.removeAll { $0.name == name }
                case .placement(let p): restoredPlacement = p
                case .settings(let r, let p):
                    replicas = settings.replicas ?? r
                    pinned = p
                    restoredSettings = true
                case .servingBias(let bias): restoredBias = bias
                }
            }
        } else {
            log = nil
        }
        if !restoredSettings || settings.replicas != nil {
            try log?.append([.settings(replicas: replicas, pinned: pinned)])
        }
        let restored = try restoredPlacement?.placement(expertCount: description.expertCount)
            ?? Placement(version: 0, workers: [], hosts: [:])
        active = restored
        routing = RoutingState(RoutingTable(placement: restored, live: []))
        for m in restoredMembers {
            guard let endpoint = Endpoint(m.address) else { continue }
            members[m.name] = Member(name: m.name, address: endpoint, cores: m.cores, memoryBytes: m.memoryBytes, origin: m.origin,
                                     draining: m.draining, lastContact: nil, state: "unreachable", loaded: [], loadedBytes: 0)
            order.append(m.name)
        }
        if let servingBias, !restoredBias.isEmpty {
            servingBias.restore(Dictionary(uniqueKeysWithValues: restoredBias.compactMap { key, value in Int(key).map { ($0, value) } }))
            persistedBias = servingBias.biases
            logger.info("restored serving bias", metadata: ["layers": "\(restoredBias.count)"])
        }
        if !restoredMembers.isEmpty {
            logger.info("restored cluster state", metadata: ["workers": "\(restoredMembers.count)", "placement_version": "\(restored.version)"])
        }
    }

    /// Registers restored members' addresses with the pool (links connect on first use).
    public func start() async {
        for name in order { await pool.register(name: name, endpoint: members[name]!.address) }
    }

    public var isEmpty: Bool { members.isEmpty }

    // MARK: - Membership

    /// A worker configured on the coordinator's command line (`--workers`), already connected.
    public func addStatic(_ info: WorkerInfo) throws {
        var member = members[info.name] ?? Member(
            name: info.name, address: info.endpoint, cores: info.cores, memoryBytes: info.memoryBytes, origin: "static",
            draining: false, lastContact: nil, state: "joining", loaded: [], loadedBytes: 0)
        member.address = info.endpoint
        member.loaded = Set(info.experts)
        member.loadedBytes = info.expertBytes
        member.lastContact = .now
        member.state = "ready"
        if members[info.name] == nil { order.append(info.name) }
        members[info.name] = member
        try persist([.member(member.record)])
    }

    /// Sets the placement a static cluster starts with (from `--placement`).
    public func setInitialPlacement(_ placement: Placement, pinned: Bool) throws {
        active = placement.withVersion(max(active.version, 1))
        self.pinned = pinned
        try persist([.settings(replicas: replicas, pinned: pinned), .placement(PlacementRecord(active))])
        publishRoutingTable()
    }

    /// `POST /v1/admin/workers/join`.
    public func join(_ request: JoinRequest) async throws -> JoinResponse {
        guard request.fingerprint == fingerprint else {
            logger.error("refused worker with another model", metadata: ["worker": "\(request.name)"])
            throw ClusterError.workerRefused(
                worker: request.name,
                reason: WireError.modelFingerprintMismatch(ours: fingerprint, theirs: request.fingerprint).description)
        }
        guard let endpoint = Endpoint(request.address) else {
            throw ClusterError.rejected("bad worker address '\(request.address)' (expected host:port)")
        }
        let isNew = members[request.name] == nil
        var member = members[request.name] ?? Member(
            name: request.name, address: endpoint, cores: request.cores, memoryBytes: request.memoryBytes, origin: "joined",
            draining: false, lastContact: nil, state: "joining", loaded: [], loadedBytes: 0)
        member.address = endpoint
        member.cores = request.cores
        member.memoryBytes = request.memoryBytes
        member.lastContact = .now
        member.fetch = request.fetch
        // A restarted worker holds nothing yet; reconciliation gives it its shard back.
        member.loaded = []
        member.loadedBytes = 0
        // A worker process joins once, when it starts (afterwards it heartbeats), so a drained
        // worker joining again was restarted: drain, stop, upgrade, start puts it back in
        // service (docs/operations.md). To keep a host out, leave its worker stopped.
        let undrained = !isNew && member.draining
        member.draining = false
        if isNew { order.append(request.name) }
        members[request.name] = member
        await pool.register(name: request.name, endpoint: endpoint)
        try persist([.member(member.record)])
        if (isNew || undrained) && !pinned { needsReplan = true }
        // A restarted worker holds nothing: out of routing now, not at the next tick.
        if !isNew { publishRoutingTable() }
        logger.info(isNew ? "worker joined" : undrained ? "drained worker restarted: back in service" : "worker rejoined",
                    metadata: ["worker": "\(request.name)", "address": "\(endpoint)"])
        return JoinResponse(heartbeatSeconds: settings.heartbeat.seconds, state: member.state)
    }

    /// `POST /v1/admin/workers/heartbeat`.
    public func heartbeat(_ request: HeartbeatRequest) async throws {
        guard var member = members[request.name] else { throw ClusterError.unknownWorker(request.name) }
        member.lastContact = .now
        member.fetch = request.fetch
        if let endpoint = Endpoint(request.address), endpoint != member.address {
            member.address = endpoint
            await pool.register(name: request.name, endpoint: endpoint)
            try persist([.member(member.record)])
        }
        members[request.name] = member
    }

    // MARK: - The control loop

    /// One pass: liveness, planning, shard reconciliation, switching, releasing.
    public func tick() async {
        let now = ContinuousClock.now
        let routedLive = routing.table.live
        for name in order {
            guard var member = members[name] else { continue }
            // Ping in the background; the answer counts as contact.
            if !member.pinging && member.state != "gone" {
                member.pinging = true
                Task { await self.ping(name) }
            }
            if publishedLive.contains(name) && !routedLive.contains(name) { member.markedDown = true }
            let previous = member.state
            member.state = state(of: member, now: now)
            if member.state != previous {
                logger.notice("worker \(member.state)", metadata: ["worker": "\(name)", "was": "\(previous)"])
                if member.state == "gone" && !pinned && active.workers.contains(name) { needsReplan = true }
                if member.state == "unreachable" || member.state == "gone" { member.loaded = [] }
            }
            members[name] = member
        }
        if let stagedPlacement = staged, stagedPlacement.workers.contains(where: { !isLive(members[$0]) && !stagedPlacement.experts(ofWorkerName: $0).isEmpty }) {
            logger.warning("a worker of the staged placement is down; planning again", metadata: ["version": "\(stagedPlacement.version)"])
            staged = nil
            needsReplan = true
        }
        if needsReplan && staged == nil && retiring == nil {
            needsReplan = false
            do {
                try stage(try plan(load: nil))
            } catch {
                logger.error("cannot place experts", metadata: ["error": "\(error)"])
            }
        }
        // Switch once every worker holds its part of the staged placement.
        if let next = staged, next.workers.indices.allSatisfy({ index in
            let name = next.workers[index]
            let wanted = next.experts(ofWorker: index)
            return wanted.isEmpty || (isLive(members[name]) && Set(wanted).isSubset(of: members[name]!.loaded))
        }) {
            retiring = active
            active = next
            staged = nil
            do { try persist([.placement(PlacementRecord(active))]) } catch { logger.error("cannot persist placement", metadata: ["error": "\(error)"]) }
            logger.notice("placement switched", metadata: ["version": "\(active.version)"])
        }
        if let old = retiring, routing.stepsInFlight(version: old.version) == 0 { retiring = nil }
        publishRoutingTable()
        reconcileShards()
        for name in order {
            Gauge(label: "jindou_worker_live", dimensions: [("worker", name)]).record(isLive(members[name]) ? 1 : 0)
        }
        // What /ready judges, for alerts: (layer, expert) pairs held by a live worker of the routing table.
        let readiness = readiness()
        servedExpertsGauge.record(readiness.servedExperts ?? 0)
        totalExpertsGauge.record(readiness.totalExperts ?? 0)
        balanceTick(now: now)
    }

    /// Once a second: the serving bias update (with `--balance-bias`) and the load gauges.
    private func balanceTick(now: ContinuousClock.Instant) {
        if let last = lastBiasUpdate, now - last < .seconds(1) { return }
        lastBiasUpdate = now
        let window = statistics.window()
        if let servingBias {
            servingBias.update(load: window.experts)
            let windowDuration = Duration.seconds(statistics.windowSeconds)
            if now - lastBiasPersist >= windowDuration {
                persistBias()
                _ = servingBias.snapshot(resetObserved: true)
            }
        }
        recordLoadMetrics(loadReport(window: window))
    }

    private func persistBias() {
        guard let servingBias else { return }
        lastBiasPersist = .now
        let biases = servingBias.biases
        guard biases != persistedBias else { return }
        do {
            try persist([.servingBias(biases.stringKeys)])
            persistedBias = biases
        } catch {
            logger.error("cannot persist the serving bias", metadata: ["error": "\(error)"])
        }
    }

    private func recordLoadMetrics(_ report: LoadReport) {
        guard let window = report.window else { return }
        for worker in window.workers {
            Gauge(label: "jindou_worker_load_share", dimensions: [("worker", worker.name)]).record(worker.share)
            Gauge(label: "jindou_worker_activated_experts", dimensions: [("worker", worker.name)]).record(worker.activatedExpertsPerStep)
            Gauge(label: "jindou_worker_dispatch_bytes", dimensions: [("worker", worker.name)]).record(Double(worker.bytesSent))
            Gauge(label: "jindou_worker_dispatch_seconds_window", dimensions: [("worker", worker.name)]).record(worker.dispatchSeconds)
            Gauge(label: "jindou_worker_compute_seconds_window", dimensions: [("worker", worker.name)]).record(worker.computeSeconds)
        }
        Gauge(label: "jindou_worker_load_max_over_mean").record(window.workerMaxOverMean)
        Gauge(label: "jindou_worker_activated_experts_max_over_mean").record(window.activatedMaxOverMean)
        Gauge(label: "jindou_window_tokens").record(Double(window.tokens))
        for layer in window.layers {
            Gauge(label: "jindou_layer_expert_load_max", dimensions: [("layer", String(layer.layer))]).record(Double(layer.max))
            Gauge(label: "jindou_layer_expert_load_mean", dimensions: [("layer", String(layer.layer))]).record(layer.mean)
        }
        if let bias = report.bias {
            Gauge(label: "jindou_serving_bias_max_abs").record(bias.maxAbsBias)
            Gauge(label: "jindou_serving_bias_routing_change").record(bias.routingChange)
            Gauge(label: "jindou_serving_bias_kl").record(bias.divergence)
            Gauge(label: "jindou_serving_bias_observed_routing_change").record(bias.observedRoutingChange)
            Gauge(label: "jindou_serving_bias_backoffs").record(Double(bias.backoffs))
        }
    }

    private func state(of member: Member, now: ContinuousClock.Instant) -> String {
        guard let contact = member.lastContact else { return member.state == "joining" ? "joining" : "unreachable" }
        let age = now - contact
        if age > settings.goneAfter { return "gone" }
        if age > settings.unreachableAfter || member.markedDown { return "unreachable" }
        if member.draining {
            return member.loaded.isEmpty && desired(member.name).isEmpty ? "drained" : "draining"
        }
        return "ready"
    }

    private func isLive(_ member: Member?) -> Bool {
        guard let member else { return false }
        return ["ready", "draining", "drained"].contains(member.state)
    }

    private func ping(_ name: String) async {
        let ok: Bool
        do {
            _ = try await withTimeout(settings.unreachableAfter) { try await self.pool.ping(name) }
            ok = true
        } catch {
            ok = false
        }
        guard var member = members[name] else { return }
        member.pinging = false
        if ok {
            member.lastContact = .now
            let wasDown = member.markedDown
            member.markedDown = false
            if wasDown || member.state == "unreachable" || member.state == "joining" {
                // Reconnected: learn what it holds now (it may have restarted).
                if let info = await pool.info(name) {
                    member.loaded = Set(info.experts)
                    member.loadedBytes = info.expertBytes
                    if member.memoryBytes == 0 { member.memoryBytes = info.memoryBytes }
                }
                member.state = member.draining ? "draining" : "ready"
            }
        }
        members[name] = member
    }

    /// The experts `name` must hold now: active ∪ staged ∪ retiring.
    private func desired(_ name: String) -> Set<ExpertKey> {
        var keys = Set(active.experts(ofWorkerName: name))
        if let staged { keys.formUnion(staged.experts(ofWorkerName: name)) }
        if let retiring { keys.formUnion(retiring.experts(ofWorkerName: name)) }
        return keys
    }

    private func reconcileShards() {
        for name in order {
            guard var member = members[name], isLive(member), !member.updating else { continue }
            let wanted = desired(name)
            guard wanted != member.loaded else { continue }
            member.updating = true
            members[name] = member
            let version = staged?.version ?? active.version
            let spec = ExpertSetCoding.spec(wanted, version: version)
            Task {
                do {
                    let reply = try await pool.exchange(name, ShardMessage.frame(.shardUpdate, spec: spec, requestID: pool.nextRequestID()), control: true)
                    let status = try ShardMessage.spec(reply, kind: .shardStatus)
                    let held = try ExpertSetCoding.keys(status, expertCount: description.expertCount)
                    self.shardApplied(name, held: Set(held), bytes: status.expertBytes)
                } catch {
                    self.shardFailed(name, error: error)
                }
            }
        }
    }

    private func shardApplied(_ name: String, held: Set<ExpertKey>, bytes: UInt64) {
        guard var member = members[name] else { return }
        member.updating = false
        member.loaded = held
        member.loadedBytes = bytes
        member.lastContact = .now
        members[name] = member
        logger.info("worker shard updated", metadata: ["worker": "\(name)", "experts": "\(held.count)"])
    }

    private func shardFailed(_ name: String, error: Error) {
        members[name]?.updating = false
        logger.warning("shard update failed", metadata: ["worker": "\(name)", "error": "\(error)"])
    }

    private func publishRoutingTable() {
        // A worker takes tokens only once it holds every expert the active placement gives it:
        // one that restarted is reachable again before reconciliation has reloaded its shard,
        // and dispatching to it then fails with EXPERT_NOT_HOSTED (its replicas serve meanwhile).
        let live = Set(order.filter { name in
            guard let member = members[name], isLive(member) else { return false }
            return Set(active.experts(ofWorkerName: name)).isSubset(of: member.loaded)
        })
        routing.replace(RoutingTable(placement: active, live: live))
        publishedLive = live
    }

    // MARK: - Planning

    private var eligible: [PlacementPlanner.Worker] {
        order.compactMap { name in
            guard let m = members[name], m.state == "ready", !m.draining else { return nil }
            return PlacementPlanner.Worker(name: name, capacityBytes: m.memoryBytes)
        }
    }

    private var nextVersion: UInt64 { max(active.version, staged?.version ?? 0) + 1 }

    private func plan(load: [ExpertKey: Double]?, replicas: Int? = nil) throws -> Placement {
        let planner = PlacementPlanner(experts: description.allExperts, expertBytes: expertBytes)
        return try planner.plan(workers: eligible, replicas: replicas ?? self.replicas, current: active,
                                version: nextVersion, load: load)
    }

    /// EPLB-style placement from measured load (`rebalance --extra-slots`): hot experts get
    /// extra copies (their tokens split across them), copies are packed heaviest-first with
    /// the same number of slots per worker and layer, capped by the smallest worker's memory.
    /// Packing is symmetric in the workers, so each layer's packs are then matched to the
    /// workers already holding most of their experts, which keeps the experts to load small.
    private func replicatedPlan(load: [ExpertKey: Double], steps: Int, extraSlots: Double,
                                objective: ReplicationPlanner.Objective) throws -> Placement {
        let workers = eligible
        guard !workers.isEmpty else { throw PlacementError.badSpec("no workers to place experts on") }
        let layers = description.sparseLayers
        let memoryCap = workers.map { Int(min($0.capacityBytes / max(1, expertBytes), UInt64(Int.max))) / max(1, layers.count) }.min()
        let matrix = layers.map { l in (0..<description.expertCount).map { load[ExpertKey(layer: l, expert: $0)] ?? 0 } }
        let planner = ReplicationPlanner(workers: workers.count, extraSlotFraction: extraSlots, memoryCapExperts: memoryCap,
                                         objective: objective)
        var layout = try planner.plan(load: matrix, steps: max(1, steps)).layout
        let names = workers.map(\.name)
        for (i, layer) in layers.enumerated() {
            // held[w][e]: worker w (of `names`) holds expert e of this layer now.
            let held = names.map { name -> Set<Int> in
                guard let index = active.workers.firstIndex(of: name) else { return [] }
                return Set(active.experts(ofWorker: index).filter { $0.layer == layer }.map(\.expert))
            }
            var packs = [Set<Int>](repeating: [], count: names.count)
            for (expert, copies) in layout.hosts[i].enumerated() { for p in copies { packs[p].insert(expert) } }
            var pairs: [(overlap: Int, pack: Int, worker: Int)] = []
            for p in packs.indices { for w in names.indices { pairs.append((packs[p].intersection(held[w]).count, p, w)) } }
            pairs.sort { ($0.overlap, -$0.pack, -$0.worker) > ($1.overlap, -$1.pack, -$1.worker) }
            var target = [Int](repeating: -1, count: names.count)
            var taken = Set<Int>()
            for pair in pairs where target[pair.pack] < 0 && !taken.contains(pair.worker) {
                target[pair.pack] = pair.worker
                taken.insert(pair.worker)
            }
            layout.hosts[i] = layout.hosts[i].map { $0.map { target[$0] } }
        }
        return try layout.placement(workerNames: names, modelLayers: layers, version: nextVersion)
    }

    /// Stages `placement` unless it changes nothing; returns the placement that will be active.
    @discardableResult
    private func stage(_ placement: Placement) throws -> Placement {
        guard !placement.sameAssignments(as: active) else {
            staged = nil
            return active
        }
        staged = placement
        logger.notice("placement staged", metadata: ["version": "\(placement.version)"])
        reconcileShards()
        return placement
    }

    private func refuseIfPinned() throws {
        if pinned {
            throw ClusterError.conflict("the placement is pinned from a file (--placement FILE); change the file and restart instead")
        }
    }

    /// `jindouctl scale --replicas N`.
    public func scale(replicas newReplicas: Int) throws -> PlacementChange {
        try refuseIfPinned()
        guard newReplicas >= 1 else { throw ClusterError.rejected("replicas must be at least 1") }
        let placement = try plan(load: nil, replicas: newReplicas)
        replicas = newReplicas
        try persist([.settings(replicas: replicas, pinned: pinned)])
        return PlacementChange(from: active, to: try stage(placement), applied: true, load: statistics.perExpert)
    }

    /// `jindouctl drain WORKER`: moves its experts elsewhere; then it can be stopped.
    public func drain(_ name: String) throws -> PlacementChange {
        try refuseIfPinned()
        guard var member = members[name] else { throw ClusterError.unknownWorker(name) }
        member.draining = true
        members[name] = member
        guard !eligible.isEmpty else {
            members[name]?.draining = false
            throw ClusterError.conflict("cannot drain \(name): no other worker could take its experts")
        }
        let placement: Placement
        do {
            placement = try plan(load: nil)
        } catch {
            members[name]?.draining = false
            throw error
        }
        try persist([.member(member.record)])
        return PlacementChange(from: active, to: try stage(placement), applied: true, load: statistics.perExpert)
    }

    /// `jindouctl rebalance [--dry-run]`: a placement from measured per-expert load.
    public func rebalance(dryRun: Bool, extraSlots: Double? = nil, objective: String? = nil) throws -> PlacementChange {
        try refuseIfPinned()
        let (load, steps) = statistics.loadForPlacement
        guard load.values.contains(where: { $0 > 0 }) else {
            throw ClusterError.conflict("no load measured yet: serve some requests before rebalancing")
        }
        let placement: Placement
        if let extraSlots {
            guard extraSlots >= 0, extraSlots <= 64 else { throw ClusterError.rejected("extra_slots must be in [0, 64] (a fraction of the slots to add)") }
            guard let goal = ReplicationPlanner.Objective(rawValue: objective ?? "tokens") else {
                throw ClusterError.rejected("objective must be tokens or activated, not '\(objective ?? "")'")
            }
            placement = try replicatedPlan(load: load, steps: steps, extraSlots: extraSlots, objective: goal)
        } else {
            guard objective == nil else { throw ClusterError.rejected("objective needs extra_slots") }
            placement = try plan(load: load)
        }
        if dryRun { return PlacementChange(from: active, to: placement, applied: false, load: load) }
        return PlacementChange(from: active, to: try stage(placement), applied: true, load: load)
    }

    /// Whether no change is in progress and every live worker holds exactly its part.
    public var isSettled: Bool {
        staged == nil && retiring == nil && !needsReplan
            && order.allSatisfy { name in !isLive(members[name]) || (members[name]!.loaded == desired(name) && !members[name]!.updating) }
    }

    // MARK: - Reports

    public func status() async -> ClusterStatus {
        let transports = await pool.transports()
        let now = ContinuousClock.now
        let served = routing.table
        let workerLoad = statistics.window().workers.mapValues(\.assignments)
        let totalLoad = max(1, workerLoad.values.reduce(0, +))
        let servedCount = description.allExperts.filter { !served.liveHosts($0).isEmpty }.count
        return ClusterStatus(
            model: description.architecture.rawValue, fingerprint: fingerprint, placementVersion: active.version,
            stagedVersion: staged?.version, replicas: replicas, pinned: pinned, servedExperts: servedCount,
            totalExperts: description.allExperts.count, settled: isSettled,
            workers: order.compactMap { name in
                guard let m = members[name] else { return nil }
                return WorkerStatus(
                    name: name, address: m.address.description, state: m.state, origin: m.origin, experts: m.loaded.count,
                    expertBytes: m.loadedBytes, memoryBytes: m.memoryBytes, cores: m.cores,
                    loadShare: Double(workerLoad[name] ?? 0) / Double(totalLoad),
                    lastSeenSeconds: m.lastContact.map { (now - $0).seconds }, transport: transports[name], fetch: m.fetch)
            },
            sequenceFixedBytes: description.fixedStateBytes, kvBytesPerToken: description.keyValueCacheBytesPerToken)
    }

    /// `GET /ready`: ready when every (layer, expert) of the active placement is held by a
    /// worker the routing table lists as live — what a step needs to run. Workers show
    /// `ready` while their first shard is still being staged, so worker states alone
    /// would report readiness too early.
    public func readiness() -> ReadinessReport {
        let table = routing.table
        let all = description.allExperts
        let unserved = all.filter { key in !table.liveHosts(key).contains { members[$0]?.loaded.contains(key) == true } }
        let report = ReadinessReport(ready: unserved.isEmpty, placementVersion: active.version, servedExperts: all.count - unserved.count,
                                     totalExperts: all.count,
                                     unserved: unserved.isEmpty ? nil : unserved.prefix(10).map { "layer \($0.layer) expert \($0.expert)" })
        guard !unserved.isEmpty else { return report }
        var reason = "\(all.count - unserved.count) of \(all.count) experts are served"
        let live = order.filter { isLive(members[$0]) }.count
        if members.isEmpty {
            reason += "; no worker has joined yet"
        } else if live == 0 {
            reason += "; none of the \(members.count) workers is live"
        } else if let staged {
            reason += "; placement version \(staged.version) is being loaded by the workers"
        } else {
            reason += "; \(live) of \(members.count) workers are live"
        }
        var result = report
        result.reason = reason + " (not served: " + report.unserved!.joined(separator: ", ") + (unserved.count > 10 ? ", …)" : ")")
        return result
    }

    public func shards(layer: Int?) -> ShardsReport { ShardsReport(placement: active, layer: layer) }

    public func loadReport() -> LoadReport { loadReport(window: statistics.window()) }

    func loadReport(window w: LoadStatistics.Snapshot) -> LoadReport {
        let total = statistics.total
        // Every worker of the active placement counts, idle ones with zero.
        var names = active.workers
        for name in w.workers.keys.sorted() where !names.contains(name) { names.append(name) }
        let assignments = max(1, w.workers.values.reduce(0) { $0 + $1.assignments })
        let workers = names.map { name in
            let c = w.workers[name] ?? LoadStatistics.WorkerCounts()
            let hosted = active.experts(ofWorkerName: name).reduce(into: [Int: Int]()) { $0[$1.layer, default: 0] += 1 }.values.max() ?? 0
            return LoadWindowReport.Worker(
                name: name, assignments: c.assignments, share: Double(c.assignments) / Double(assignments), dispatches: c.dispatches,
                activatedExpertsPerStep: c.dispatches == 0 ? 0 : Double(c.activatedExperts) / Double(c.dispatches),
                hostedExperts: hosted, bytesSent: c.bytesSent, bytesReceived: c.bytesReceived,
                dispatchSeconds: Double(c.dispatchNanoseconds) / 1e9, computeSeconds: Double(c.computeNanoseconds) / 1e9)
        }
        let window = LoadWindowReport(seconds: statistics.windowSeconds, coveredSeconds: w.seconds, tokens: w.tokens, workers: workers,
                                      layers: w.experts.keys.sorted().map { layer in
                                          LoadWindowReport.Layer(layer: layer, experts: w.experts[layer]!,
                                                                 workers: names.map { w.layerAssignments[$0]?[layer] ?? 0 })
                                      })
        return LoadReport(tokens: total.tokens, experts: total.experts.stringKeys, workers: total.workers.mapValues(\.assignments),
                          window: window, bias: biasReport())
    }

    private func biasReport() -> ServingBiasReport? {
        guard let servingBias else { return nil }
        let (layers, updates) = servingBias.snapshot()
        var guarded = ServingBias.Change(), observed = ServingBias.Change()
        for state in layers.values {
            guarded.add(state.guarded)
            observed.add(state.observed)
        }
        let s = servingBias.settings
        return ServingBiasReport(
            gamma: Double(s.gamma), cap: Double(s.cap), maxRoutingChange: s.maxRoutingChange, updates: updates,
            maxAbsBias: Double(layers.values.map(\.maxAbs).max() ?? 0), routingChange: guarded.fraction,
            divergence: guarded.meanDivergence, observedRoutingChange: observed.fraction, observedDivergence: observed.meanDivergence,
            backoffs: layers.values.reduce(0) { $0 + $1.backoffs },
            layers: layers.keys.sorted().map { layer in
                let state = layers[layer]!
                return ServingBiasReport.Layer(layer: layer, maxAbsBias: Double(state.maxAbs), routingChange: state.guarded.fraction,
                                               divergence: state.guarded.meanDivergence, backoffs: state.backoffs, bias: state.bias)
            },
            maxDivergence: s.maxDivergence)
    }

    /// `jindouctl verify`: every expert served; every worker on the same model; all
    /// replicas of an expert give bit-identical outputs for probe tokens.
    public func verify() async -> VerifyReport {
        var checks: [VerifyReport.Check] = []
        let table = routing.table
        let unserved = description.allExperts.filter { key in
            !table.liveHosts(key).contains { members[$0]?.loaded.contains(key) == true }
        }
        checks.append(.init(name: "every expert served", ok: unserved.isEmpty,
                            detail: unserved.isEmpty ? "\(description.allExperts.count) (layer, expert) pairs on live workers"
                                : "not served: " + unserved.prefix(10).map(\.description).joined(separator: ", ")))
        var fingerprintProblems: [String] = []
        for name in order where isLive(members[name]) {
            if await pool.info(name) == nil { fingerprintProblems.append("\(name): no handshake yet") }
        }
        checks.append(.init(name: "same model fingerprint", ok: fingerprintProblems.isEmpty,
                            detail: fingerprintProblems.isEmpty ? "every live worker passed the handshake with \(fingerprint.prefix(16))…"
                                : fingerprintProblems.joined(separator: "; ")))
        let (compared, mismatches) = await probeReplicas(table)
        checks.append(.init(name: "replicas agree", ok: mismatches.isEmpty,
                            detail: mismatches.isEmpty ? "\(compared) replicated experts gave identical outputs"
                                : "differ: " + mismatches.prefix(10).joined(separator: "; ")))
        return VerifyReport(checks: checks)
    }

    /// Sends probe tokens (one per replicated expert, weight 1) to every host of each
    /// replicated expert and compares the outputs bit for bit.
    private func probeReplicas(_ table: RoutingTable) async -> (Int, [String]) {
        let h = description.hiddenSize
        var compared = 0
        var mismatches: [String] = []
        for layer in description.sparseLayers {
            let replicated = (0..<description.expertCount).map { ExpertKey(layer: layer, expert: $0) }
                .filter { table.liveHosts($0).count >= 2 }
            guard !replicated.isEmpty else { continue }
            var outputs: [ExpertKey: [[Float]]] = [:]
            for name in Set(replicated.flatMap { table.liveHosts($0) }).sorted() {
                let mine = replicated.filter { table.liveHosts($0).contains(name) }
                var routing = RoutingDecision()
                var hidden: [Float] = []
                for key in mine {
                    routing.append(experts: [Int32(key.expert)], weights: [1])
                    hidden += (0..<h).map { Float(sin(Double($0 * 31 + key.expert * 7 + layer))) }
                }
                let message = DispatchMessage(requestID: pool.nextRequestID(), layer: layer, placementVersion: table.placement.version,
                                              hiddenSize: h, dtype: .f32, routing: routing, hidden: hidden)
                do {
                    let combine = try CombineMessage(frame: try await pool.exchange(name, message.frame()))
                    for (row, key) in mine.enumerated() { outputs[key, default: []].append(Array(combine.output[(row * h)..<((row + 1) * h)])) }
                } catch {
                    mismatches.append("\(name) layer \(layer): \(error)")
                }
            }
            for (key, rows) in outputs where rows.count >= 2 {
                compared += 1
                if rows.contains(where: { $0 != rows[0] }) { mismatches.append("\(key)") }
            }
        }
        return (compared, mismatches)
    }

    // MARK: - Persistence

    private func persist(_ records: [ClusterRecord]) throws {
        guard let log else { return }
        try log.append(records)
        if log.needsCompaction {
            var state: [ClusterRecord] = [.settings(replicas: replicas, pinned: pinned)]
            state += order.compactMap { members[$0].map { .member($0.record) } }
            state.append(.placement(PlacementRecord(active)))
            if let biases = servingBias?.biases, !biases.isEmpty { state.append(.servingBias(biases.stringKeys)) }
            try log.compact(to: state)
        }
    }
}

extension ClusterController: Service {
    /// Runs the control loop until graceful shutdown.
    public nonisolated func run() async throws {
        await start()
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await tick()
            try? await Task.sleep(for: settings.heartbeat / 2)
        }
        await persistBias()
    }
}

extension Placement {
    /// Experts of the worker called `name` (none if it is not in this placement).
    public func experts(ofWorkerName name: String) -> [ExpertKey] {
        guard let index = workers.firstIndex(of: name) else { return [] }
        return experts(ofWorker: index)
    }
}

/// Runs `body`, failing with a timeout after `limit`.
func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw ClusterError.rejected("timed out after \(limit)")
        }
        let result = try await group.next()!
        group.cancelAll()
        return result
    }
}

extension Dictionary where Key == Int {
    /// JSON objects take string keys (layer numbers in reports and the state log).
    var stringKeys: [String: Value] { Dictionary<String, Value>(uniqueKeysWithValues: map { (String($0.key), $0.value) }) }
}
