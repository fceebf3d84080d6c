import Foundation
import JindouModel
import JindouRouting
import Metrics

/// What a running request produces.
public enum GenerationEvent: Sendable {
    /// The float32 logits of the last prompt position (when asked for), before the first token.
    case promptLogits([Float])
    case token(Int)
    /// The log-probabilities of the token that follows (when the request asks for them).
    case logprobs(TokenLogprobs)
    /// What speculative decoding did for this request (before `finished`, when it ran).
    case speculation(SpeculationStatistics)
    /// Prompt tokens whose KV rows came from the prefix cache (before the first token, on a hit).
    case cachedPrompt(Int)
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
}

/// Why the scheduler refused a request.
public enum SchedulerError: Error, Equatable, CustomStringConvertible {
    /// The waiting queue is full: retry later (HTTP 429).
    case busy(queued: Int)
    /// This client already has as many requests waiting as one client may (HTTP 429).
    case clientBusy(queued: Int)
    /// The request alone needs more KV cache than the whole budget (HTTP 400).
    case tooLarge(neededBytes: Int, budgetBytes: Int)
    case shuttingDown

    public var description: String {
        switch self {
        case .busy(let queued): "the server is busy (\(queued) requests already waiting); retry later"
        case .clientBusy(let queued): "you already have \(queued) requests waiting, the most one client may queue (--max-queued-per-client); retry later"
        case .tooLarge(let needed, let budget):
            "the request needs \(needed / 1_000_000) MB of KV cache (prompt + max_tokens), more than the whole budget of \(budget / 1_000_000) MB"
        case .shuttingDown: "the server is shutting down"
        }
    }
}

/// Continuous batching: every step runs one forward pass over all running sequences —
/// one decode token each plus chunks of prompts still being prefilled — so one dispatch
/// per worker per MoE layer carries the tokens of every request. New requests join at
/// step boundaries when the KV-cache budget allows; otherwise they wait in a bounded
/// queue. A request whose consumer goes away is dropped at the next step boundary.
public actor BatchScheduler {
    public struct Options: Sendable {
        /// Most tokens in one step (decode tokens + prefill chunk tokens).
        public var maximumStepTokens: Int
        /// Most sequences running at once.
        public var maximumSequences: Int
        /// KV-cache bytes that running sequences may reserve (prompt + max_tokens each).
        public var kvCacheBudgetBytes: Int
        /// Requests that may wait for admission before new ones get `busy`.
        public var maximumQueued: Int
        /// Requests one client (`GenerationRequest.clientKey`) may have waiting before its
        /// new ones get `clientBusy` (nil: only `maximumQueued` applies).
        public var maximumQueuedPerClient: Int?
        /// Speculative decoding for requests that do not opt out.
        public var speculation: SpeculationOptions
        /// Whether a step's sequences run as overlapping micro-batches.
        public var microBatches: MicroBatching
        /// Whether finished sequences' caches are kept for prompts that share their prefix
        /// (`PrefixCache`; off with `--speculative mtp`, whose draft layer has its own cache).
        public var prefixCaching: Bool
        /// Most prompt + completion tokens of a request (`--max-model-len`; nil: the model's
        /// max_position_embeddings): the rows each sequence's mapped cache has room for.
        public var maximumModelLength: Int?

        public init(maximumStepTokens: Int = 512, maximumSequences: Int = 64, kvCacheBudgetBytes: Int = 4 << 30,
                    maximumQueued: Int = 256, speculation: SpeculationOptions = .off, microBatches: MicroBatching = .auto,
                    prefixCaching: Bool = true, maximumQueuedPerClient: Int? = nil, maximumModelLength: Int? = nil) {
            self.maximumModelLength = maximumModelLength
            self.maximumQueuedPerClient = maximumQueuedPerClient
            self.prefixCaching = prefixCaching
            self.speculation = speculation
            self.microBatches = microBatches
            self.maximumStepTokens = maximumStepTokens
            self.maximumSequences = maximumSequences
            self.kvCacheBudgetBytes = kvCacheBudgetBytes
            self.maximumQueued = maximumQueued
        }
    }

    /// The logits with what a constraint's mask forbids at −∞.
    static func masked(_ logits: [Float], _ allowed: [Bool]?) -> [Float] {
        guard let allowed else { return logits }
        var result = logits
        for i in result.indices where i >= allowed.count || !allowed[i] { result[i] = -.infinity }
        return result
    }

    final class Sequence {
        let id: Int
        let request: GenerationRequest
        /// Tokens that end this sequence (the request's, else the model's EOS ids).
        let stopTokenIDs: Set<Int>
        let cache: KVCache
        let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
        /// The full reservation when queued; at admission less the bytes it shares.
        var reservedBytes: Int
        var sampler: Sampler
        var prefilled = 0
        var generated: [Int] = []
        var pendingToken: Int?
        var cancelled = false
        /// Speculation of this request (counted when it speculates).
        var speculation: SpeculationStatistics?
        /// With `--speculative mtp`: the MTP layer's state and its drafts for the next step.
        var multiTokenState: MultiTokenDraftState?
        var multiTokenDrafts: [Int] = []
        /// The request's constraint, advanced by each token it emits.
        var constraint: (any TokenConstraint)?
        let submitted = ContinuousClock.now
        var lastToken: ContinuousClock.Instant?

        init(id: Int, request: GenerationRequest, stopTokenIDs: Set<Int>, cache: KVCache, reservedBytes: Int,
             continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation) {
            self.id = id
            self.request = request
            self.stopTokenIDs = stopTokenIDs
            self.cache = cache
            self.reservedBytes = reservedBytes
            self.continuation = continuation
            sampler = Sampler(request.sampling)
            constraint = request.constraint
        }

        var inPrefill: Bool { prefilled < request.promptTokenIDs.count }
    }

    public let engine: InferenceEngine
    public let options: Options
    private var waiting: [Sequence] = []
    private var running: [Sequence] = []
    private var nextID = 0
    private var reservedBytes = 0
    private var wake: CheckedContinuation<Void, Never>?
    private var stopped = false

    // Metrics (exported for Prometheus by the daemon's metrics backend).
    private let batchSequences = Recorder(label: "jindou_batch_sequences")
    private let batchTokens = Recorder(label: "jindou_batch_tokens")
    private let stepSeconds = Metrics.Timer(label: "jindou_step_seconds")
    private let timeToFirstToken = Metrics.Timer(label: "jindou_time_to_first_token_seconds")
    private let interTokenLatency = Metrics.Timer(label: "jindou_inter_token_latency_seconds")
    private let promptTokens = Counter(label: "jindou_prompt_tokens_total")
    private let generatedTokens = Counter(label: "jindou_generation_tokens_total")
    private let queueDepth = Gauge(label: "jindou_queue_depth")
    private let runningGauge = Gauge(label: "jindou_running_sequences")
    private let kvReserved = Gauge(label: "jindou_kv_cache_reserved_bytes")
    private let kvBudget = Gauge(label: "jindou_kv_cache_budget_bytes")
    /// The model's memory per sequence, split as the budget counts it: fixed (linear-attention
    /// state) and per cached token; and the fixed state the running sequences hold.
    private let sequenceFixedBytes = Gauge(label: "jindou_sequence_fixed_state_bytes")
    private let kvBytesPerToken = Gauge(label: "jindou_kv_cache_bytes_per_token")
    private let stateBytes = Gauge(label: "jindou_sequence_state_bytes")
    private var prefixCache = PrefixCache()
    private var prefixLookedUp = 0, prefixHit = 0
    private let prefixQueries = Counter(label: "jindou_prefix_cache_query_tokens_total")
    private let prefixHits = Counter(label: "jindou_prefix_cache_hit_tokens_total")
    private let prefixHitRate = Gauge(label: "jindou_prefix_cache_hit_rate")
    private let prefixBytes = Gauge(label: "jindou_prefix_cache_bytes")
    private let prefixSharedBytes = Gauge(label: "jindou_prefix_cache_shared_bytes")
    private let draftedTokens = Counter(label: "jindou_speculative_draft_tokens_total")
    private let acceptedTokens = Counter(label: "jindou_speculative_accepted_tokens_total")
    private let tokensPerStep = Recorder(label: "jindou_decode_tokens_per_step")
    private let microBatchedSteps = Counter(label: "jindou_micro_batched_steps_total")
    /// What speculation did since the scheduler started.
    public private(set) var speculationStatistics = SpeculationStatistics()

    public init(engine: InferenceEngine, options: Options = .init()) {
        self.engine = engine
        self.options = options
    }

    /// KV-cache bytes a request reserves while it runs (sliding-window layers count only
    /// what their bounded cache holds).
    /// Rows of every sequence's mapped cache: one layout for all, so caches can share pages.
    private var cachePositions: Int {
        (options.maximumModelLength ?? engine.description.maxPositionEmbeddings) + options.maximumStepTokens + options.speculation.draftTokens
    }

    /// Kept prefixes' bytes (each store once) and the bytes running sequences read from
    /// them instead of holding their own copy.
    public var prefixCacheUsage: (bytes: Int, sharedByRunning: Int, running: Int) {
        (prefixCache.bytes(running: running.map(\.cache)), running.reduce(0) { $0 + $1.cache.sharedBytes }, running.count)
    }

    private func recordPrefixBytes() {
        let usage = prefixCacheUsage
        prefixBytes.record(usage.bytes)
        prefixSharedBytes.record(usage.sharedByRunning)
    }

    public func reservation(for request: GenerationRequest) -> Int {
        engine.description.keyValueCacheBytes(tokens: request.promptTokenIDs.count + request.maxNewTokens,
                                              stepTokens: options.maximumStepTokens)
    }

    /// Queues a request; its events arrive on the returned stream. Throws at once if the
    /// request can never fit or the queue is full.
    public func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        guard !stopped else { throw SchedulerError.shuttingDown }
        guard !request.promptTokenIDs.isEmpty else { throw EngineError.emptyPrompt }
        try engine.model.validate([SequenceStep(cache: KVCache(layerCount: 0, rowWidth: 0), tokens: request.promptTokenIDs,
                                                expertsPerToken: request.expertsPerToken)])
        try request.sampling.validate()
        let bytes = reservation(for: request)
        guard bytes <= options.kvCacheBudgetBytes else { throw SchedulerError.tooLarge(neededBytes: bytes, budgetBytes: options.kvCacheBudgetBytes) }
        // Requests that can start at the next step boundary never count against the queue.
        let fitsNow = waiting.isEmpty && running.count < options.maximumSequences
            && reservedBytes + bytes <= options.kvCacheBudgetBytes
        guard fitsNow || waiting.count < options.maximumQueued else { throw SchedulerError.busy(queued: waiting.count) }
        if !fitsNow, let limit = options.maximumQueuedPerClient, let key = request.clientKey {
            let queued = waiting.count { $0.request.clientKey == key }
            guard queued < limit else { throw SchedulerError.clientBusy(queued: queued) }
        }
        let id = nextID
        nextID += 1
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { Task { await self?.cancel(id) } }
        }
        let sequence = Sequence(id: id, request: request, stopTokenIDs: request.stopTokenIDs ?? Set(engine.description.eosTokenIDs),
                                cache: engine.model.makeCache(maxPositions: cachePositions), reservedBytes: bytes, continuation: continuation)
        waiting.append(sequence)
        queueDepth.record(waiting.count)
        wake?.resume()
        wake = nil
        return stream
    }

    /// Marks a request cancelled (its consumer went away); it leaves at the next step.
    func cancel(_ id: Int) {
        for s in running + waiting where s.id == id { s.cancelled = true }
        wake?.resume()
        wake = nil
    }

    public var runningCount: Int { running.count }
    public var waitingCount: Int { waiting.count }

    /// Runs steps until cancelled. Call once (the daemon runs it as part of its service group).
    public func run() async {
        while !Task.isCancelled && !stopped {
            admit()
            if running.isEmpty {
                await withCheckedContinuation { wake = $0 }
                continue
            }
            await step()
        }
        for s in running + waiting { s.continuation.finish(throwing: SchedulerError.shuttingDown) }
        running.removeAll()
        waiting.removeAll()
    }

    public func stop() {
        stopped = true
        wake?.resume()
        wake = nil
    }

    /// Moves waiting requests into the batch, oldest first, while the budget allows.
    private func admit() {
        waiting.removeAll { s in
            if s.cancelled { s.continuation.finish() }
            return s.cancelled
        }
        while let next = waiting.first, running.count < options.maximumSequences {
            // A kept prefix is taken first (shared pages, or copied rows), so the request
            // reserves only what it will hold itself; the pages it shares stay counted, once,
            // in the prefix cache's bytes until nothing maps them.
            var reused = cachesPrefixes(next.request)
                ? prefixCache.reuse(prompt: next.request.promptTokenIDs, expertsPerToken: next.request.expertsPerToken, into: next.cache) : 0
            var reservation = max(0, self.reservation(for: next.request) - next.cache.sharedBytes)
            let caches = running.map(\.cache) + [next.cache]
            if reservedBytes + reservation + prefixCache.pinnedBytes(running: caches) > options.kvCacheBudgetBytes {
                // Not with the kept prefix pinned: without it, evicting what it takes.
                if reused > 0 { next.cache.reset() }
                reused = 0
                reservation = self.reservation(for: next.request)
                guard reservedBytes + reservation + prefixCache.pinnedBytes(running: running.map(\.cache)) <= options.kvCacheBudgetBytes else { break }
            }
            waiting.removeFirst()
            next.reservedBytes = reservation
            reservedBytes += reservation
            running.append(next)
            promptTokens.increment(by: next.request.promptTokenIDs.count)
            // Kept prefixes give way to running sequences.
            prefixCache.evict(toAtMost: options.kvCacheBudgetBytes - reservedBytes, running: caches)
            if cachesPrefixes(next.request) {
                next.prefilled = reused
                if reused > 0 { next.continuation.yield(.cachedPrompt(reused)) }
                prefixLookedUp += next.request.promptTokenIDs.count
                prefixHit += reused
                prefixQueries.increment(by: next.request.promptTokenIDs.count)
                prefixHits.increment(by: reused)
                prefixHitRate.record(Double(prefixHit) / Double(max(1, prefixLookedUp)))
            }
            recordPrefixBytes()
        }
        queueDepth.record(waiting.count)
        runningGauge.record(running.count)
        kvReserved.record(reservedBytes)
        kvBudget.record(options.kvCacheBudgetBytes)
        sequenceFixedBytes.record(engine.description.fixedStateBytes)
        kvBytesPerToken.record(engine.description.keyValueCacheBytesPerToken)
        stateBytes.record(running.reduce(0) { $0 + $1.cache.stateBytes })
    }

    /// Prompts with images are not cached (their rows depend on the pixels), nor are prefixes
    /// with the MTP draft layer (it keeps a cache of its own).
    /// Models with a recurrent state (linear attention) reuse only whole kept sequences
    /// (PrefixCache.reuse).
    private func cachesPrefixes(_ request: GenerationRequest) -> Bool {
        options.prefixCaching && request.multimodal == nil && options.speculation.mode != .mtp
    }

    private func retire(_ s: Sequence) {
        reservedBytes -= s.reservedBytes
        running.removeAll { $0 === s }
    }

    /// One forward pass over the batch, then sampling and events.
    private func step() async {
        running.removeAll { s in
            if s.cancelled {
                reservedBytes -= s.reservedBytes
                s.continuation.finish()
            }
            return s.cancelled
        }
        guard !running.isEmpty else { return }
        // Decode tokens first (one per sequence, plus its drafts when speculating), then
        // prompt chunks in arrival order.
        var budget = options.maximumStepTokens
        var plan: [(Sequence, [Int], LogitsSelection)] = []
        var drafted: [Int: (drafts: [Int], cacheLength: Int)] = [:]
        let predictor = options.speculation.mode == .mtp ? engine.predictor : nil
        for s in running where !s.inPrefill {
            guard let token = s.pendingToken else { continue }
            budget -= 1
            let limit = min(s.request.maxNewTokens - s.generated.count - 1, max(0, budget))
            let drafts = !s.request.speculates ? []
                : predictor != nil ? Array(s.multiTokenDrafts.prefix(max(0, limit)))
                : options.speculation.drafts(after: s.request.promptTokenIDs + s.generated, limit: limit)
            budget -= drafts.count
            drafted[s.id] = (drafts, s.cache.length)
            // A recurrent state (linear attention) keeps each verified token's, to roll back to.
            if !drafts.isEmpty { s.cache.keepStates(forNext: drafts.count + 1) }
            plan.append((s, [token] + drafts, drafts.isEmpty ? .last : .all))
        }
        for s in running where s.inPrefill && budget > 0 {
            let prompt = s.request.promptTokenIDs
            let chunk = Array(prompt[s.prefilled..<min(prompt.count, s.prefilled + budget)])
            budget -= chunk.count
            plan.append((s, chunk, s.prefilled + chunk.count == prompt.count ? .last : .none))
        }
        guard !plan.isEmpty else { return }
        batchSequences.record(plan.count)
        batchTokens.record(plan.reduce(0) { $0 + $1.1.count })

        // MTP drafting needs each speculating sequence's normed hidden states of the step.
        for (s, _, _) in plan where predictor != nil && s.request.speculates && s.multiTokenState == nil {
            s.multiTokenState = predictor!.makeState(for: engine.model)
        }
        let batch = plan.map {
            var step = SequenceStep(cache: $0.0.cache, tokens: $0.1, expertsPerToken: $0.0.request.expertsPerToken, logits: $0.2,
                                    multimodal: $0.0.request.multimodal)
            if $0.0.multiTokenState != nil { step.hidden = .all }
            return step
        }
        let prefilledBefore = Dictionary(uniqueKeysWithValues: plan.map { ($0.0.id, $0.0.prefilled) })
        let vocabulary = engine.description.vocabularySize, width = engine.description.hiddenSize
        // Token masks of this step's constrained samples depend only on the tokens so far:
        // computed while the model runs, so a fresh mask does not lengthen the step.
        var masks: [Int: Task<[Bool], Never>] = [:]
        for (s, _, selection) in plan where selection != .none {
            if let constraint = s.constraint {
                masks[s.id] = Task.detached(priority: .userInitiated) { constraint.allowedTokens(vocabularySize: vocabulary) }
            }
        }
        let start = ContinuousClock.now
        let logits: [[Float]]
        var hidden: [[Float]] = []
        let withHidden = batch.contains { $0.hidden != .none }
        if !withHidden, options.microBatches.groups(tokenCounts: batch.map(\.tokens.count), remoteExperts: engine.experts.isRemote).count > 1 {
            microBatchedSteps.increment()
        }
        do {
            if withHidden {
                (logits, hidden) = try await engine.model.forwardReturningHidden(batch, experts: engine.experts)
            } else {
                logits = try await engine.model.forward(batch, experts: engine.experts, microBatches: options.microBatches)
            }
        } catch {
            // The step failed (a worker is gone, …): fail its sequences, keep serving.
            for (s, _, _) in plan {
                s.continuation.finish(throwing: error)
                retire(s)
            }
            return
        }
        stepSeconds.recordNanoseconds((ContinuousClock.now - start).nanoseconds)

        var multiToken: [(Sequence, MultiTokenPredictor.Verified)] = []
        for (index, ((s, tokens, selection), rowLogits)) in zip(plan, logits).enumerated() {
            if s.inPrefill {
                s.prefilled += tokens.count
                if selection == .none {
                    // A prompt chunk: MTP sees its pairs now (the next tokens are the prompt's).
                    if let state = s.multiTokenState {
                        let from = prefilledBefore[s.id]! + 1, prompt = s.request.promptTokenIDs
                        multiToken.append((s, .init(state: state, hidden: hidden[index], nextTokens: Array(prompt[from..<(from + tokens.count)]),
                                                    drafts: 0)))
                    }
                    continue
                }
                if s.request.returnLastPromptLogits { s.continuation.yield(.promptLogits(rowLogits)) }
            }
            if s.cancelled { continue }
            guard s.request.maxNewTokens > 0 else {
                finish(s, .length)
                continue
            }
            let (drafts, cacheLength) = drafted[s.id] ?? ([], s.cache.length)
            let counts = options.speculation.mode != .off && s.request.speculates && drafted[s.id] != nil
            if counts {
                s.speculation = s.speculation ?? SpeculationStatistics()
                s.speculation!.steps += 1
                s.speculation!.drafted += drafts.count
            }
            var accepted = 0
            for i in 0...drafts.count {
                let row = drafts.isEmpty ? rowLogits : Array(rowLogits[(i * vocabulary)..<((i + 1) * vocabulary)])
                let allowed = i < drafts.count ? nil : await masks[s.id]?.value
                let (token, kept) = i < drafts.count ? s.sampler.verify(row, draft: drafts[i])
                    : (s.sampler.sample(Self.masked(s.request.sampling.adjusted(row, prompt: s.request.promptTokenIDs, output: s.generated), allowed)), false)
                s.constraint?.accept(token)
                if kept { accepted += 1 }
                if counts {
                    s.speculation!.tokens += 1
                    if kept { s.speculation!.accepted += 1 }
                }
                guard emit(token, for: s, logits: row), kept else { break }
            }
            if let state = s.multiTokenState, running.contains(where: { $0 === s }), let next = s.pendingToken {
                // The verified pairs: the prompt's (last chunk) or the fed token and accepted drafts, each followed by its token.
                let rows = drafted[s.id] == nil ? tokens.count : 1 + accepted
                let followers = drafted[s.id] == nil
                    ? Array(s.request.promptTokenIDs[(prefilledBefore[s.id]! + 1)...]) + [next]
                    : Array(drafts.prefix(accepted)) + [next]
                multiToken.append((s, .init(state: state, hidden: Array(hidden[index][0..<(rows * width)]), nextTokens: followers,
                                            drafts: options.speculation.draftTokens)))
            }
            if drafted[s.id] != nil {
                // Keep the fed pending token and the accepted drafts; forget the rejected ones.
                if !drafts.isEmpty, running.contains(where: { $0 === s }) { s.cache.truncate(to: cacheLength + 1 + accepted) }
                tokensPerStep.record(1 + accepted)
                speculationStatistics.steps += 1
                speculationStatistics.tokens += 1 + accepted
                speculationStatistics.drafted += drafts.count
                speculationStatistics.accepted += accepted
                draftedTokens.increment(by: drafts.count)
                acceptedTokens.increment(by: accepted)
            }
        }
        if let predictor, !multiToken.isEmpty {
            // One MTP pass for every sequence's verified pairs, then one per further draft.
            let proposals = (try? await predictor.propose(multiToken.map(\.1), model: engine.model)) ?? multiToken.map { _ in [] }
            for ((s, _), drafts) in zip(multiToken, proposals) { s.multiTokenDrafts = drafts }
        }
    }

    /// Hands `token` to `s`'s consumer; false once the sequence is finished (stop token or
    /// max_tokens).
    private func emit(_ token: Int, for s: Sequence, logits: [Float]) -> Bool {
        let now = ContinuousClock.now
        if let last = s.lastToken {
            interTokenLatency.recordNanoseconds((now - last).nanoseconds)
        } else {
            timeToFirstToken.recordNanoseconds((now - s.submitted).nanoseconds)
        }
        s.lastToken = now
        s.generated.append(token)
        generatedTokens.increment()
        if let top = s.request.logprobs { s.continuation.yield(.logprobs(TokenLogprobs(token: token, logits: logits, top: top))) }
        s.continuation.yield(.token(token))
        if s.stopTokenIDs.contains(token) {
            finish(s, .stop)
            return false
        }
        if s.generated.count >= s.request.maxNewTokens {
            finish(s, .length)
            return false
        }
        s.pendingToken = token
        return true
    }

    private func finish(_ s: Sequence, _ reason: FinishReason) {
        if options.speculation.mode != .off && s.request.speculates {
            s.continuation.yield(.speculation(s.speculation ?? SpeculationStatistics()))
        }
        s.continuation.yield(.finished(reason, promptTokens: s.request.promptTokenIDs.count, completionTokens: s.generated.count))
        s.continuation.finish()
        retire(s)
        if cachesPrefixes(s.request) && !s.cancelled {
            prefixCache.insert(tokens: s.request.promptTokenIDs + s.generated, expertsPerToken: s.request.expertsPerToken, cache: s.cache)
            prefixCache.evict(toAtMost: options.kvCacheBudgetBytes - reservedBytes, running: running.map(\.cache))
            recordPrefixBytes()
        }
    }
}
