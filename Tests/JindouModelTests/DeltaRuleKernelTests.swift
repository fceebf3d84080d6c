import Foundation
@testable import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// The delta rule's two forms (DeltaRule.swift) and its one-token kernel
/// (JindouKernelsGeneric/DeltaRuleStep.swift) on random inputs shaped like the layers':
/// L2-normalised q (× dk^-½) and k, β in (0, 1), log decays ≤ 0 with a few strong ones, a
/// non-zero starting state. Decay per head (Gated DeltaNet) and per key channel (Kimi Delta
/// Attention).
@Suite("The delta rule: chunked form, recurrent form and the SIMD step")
struct DeltaRuleKernelTests {
    /// A run of `tokens` tokens laid out as `gatedDeltaNet` lays them out: per token a row of
    /// [q | k | v | padding], then β and g per token, and a starting state.
    struct Inputs {
        let dk: Int, dv: Int, tokens: Int, perChannel: Bool
        var rows: [Float], beta: [Float], decay: [Float], state: [Float]
        var rowStride: Int { 2 * dk + dv + 3 }
        var decayWidth: Int { perChannel ? dk : 1 }

        init(dk: Int, dv: Int, tokens: Int, perChannel: Bool, seed: UInt64) {
            self.dk = dk
            self.dv = dv
            self.tokens = tokens
            self.perChannel = perChannel
            var random = SplitMix64(seed: seed)
            func unit() -> Float { Float(random.next() >> 40) / Float(1 << 24) * 2 - 1 }
            let width = 2 * dk + dv + 3
            rows = [Float](repeating: 0, count: tokens * width)
            for t in 0..<tokens {
                for (offset, scale) in [(0, 1 / Float(dk).squareRoot()), (dk, 1)] {
                    let x = (0..<dk).map { _ in unit() }
                    let norm = (x.reduce(0) { $0 + $1 * $1 } + 1e-6).squareRoot()
                    for i in 0..<dk { rows[t * width + offset + i] = x[i] / norm * scale }
                }
                for j in 0..<dv { rows[t * width + 2 * dk + j] = unit() }
            }
            beta = (0..<tokens).map { _ in 1 / (1 + expf(-2 * unit())) }
            // −exp(A_log) · softplus(a + dt_bias): mostly mild, one in sixteen strong.
            let decayCount = tokens * (perChannel ? dk : 1)
            decay = (0..<decayCount).map { _ in
                let strong = random.next() % 16 == 0
                return -(strong ? 8 : 0.6) * log1pf(expf(2 * unit()))
            }
            state = (0..<(dk * dv)).map { _ in unit() * 0.5 }
        }

        /// Runs `body` with the run's pointers, outputs written to `output` (tokens × dv).
        func withRun<R>(output: inout [Float], _ body: (DeltaRuleRun) -> R) -> R {
            rows.withUnsafeBufferPointer { r in
                beta.withUnsafeBufferPointer { b in
                    decay.withUnsafeBufferPointer { g in
                        output.withUnsafeMutableBufferPointer { o in
                            let base = r.baseAddress!
                            return body(DeltaRuleRun(query: base, key: base + dk, value: base + 2 * dk, rowStride: rowStride,
                                                     beta: b.baseAddress!, betaStride: 1, decay: g.baseAddress!, decayStride: decayWidth,
                                                     perChannel: perChannel, output: o.baseAddress!, outputStride: dv))
                        }
                    }
                }
            }
        }
    }

    /// `torch_recurrent_gated_delta_rule` / `recurrent_kimi_delta_attention` for one head, one
    /// token at a time in plain loops and in `Scalar` precision: S ← S·e^g; kv_mem = Sᵀk;
    /// delta = (v − kv_mem)·β; S ← S + k ⊗ delta; o = Sᵀq.
    static func reference<Scalar: BinaryFloatingPoint>(_ x: Inputs, exp: (Scalar) -> Scalar) -> (output: [Scalar], state: [Scalar]) {
        let dk = x.dk, dv = x.dv
        var s = x.state.map { Scalar($0) }, output = [Scalar](repeating: 0, count: x.tokens * dv)
        for t in 0..<x.tokens {
            let row = t * x.rowStride
            for i in 0..<dk {
                let factor = exp(Scalar(x.decay[t * x.decayWidth + (x.perChannel ? i : 0)]))
                for j in 0..<dv { s[i * dv + j] *= factor }
            }
            var delta = [Scalar](repeating: 0, count: dv)
            for j in 0..<dv {
                var memory: Scalar = 0
                for i in 0..<dk { memory += s[i * dv + j] * Scalar(x.rows[row + dk + i]) }
                delta[j] = (Scalar(x.rows[row + 2 * dk + j]) - memory) * Scalar(x.beta[t])
            }
            for i in 0..<dk {
                for j in 0..<dv { s[i * dv + j] += Scalar(x.rows[row + dk + i]) * delta[j] }
            }
            for j in 0..<dv {
                var o: Scalar = 0
                for i in 0..<dk { o += s[i * dv + j] * Scalar(x.rows[row + i]) }
                output[t * dv + j] = o
            }
        }
        return (output, s)
    }

    /// The largest |a − b| relative to the largest |b| (and at least 1).
    static func relativeError(_ a: [Float], _ b: [Double]) -> Double {
        let scale = max(1, b.map(abs).max() ?? 0)
        return zip(a, b).map { abs(Double($0) - $1) }.max()! / scale
    }

    /// Measured (fp32 against the fp64 recurrence, relative to the largest value, worst over
    /// the arguments): the recurrent form 3.4e-8 (outputs 1.4e-8), the chunked form 3.4e-8
    /// (outputs 1.7e-8), chunked against recurrent 2.2e-8 — the chunked form's decays are
    /// products of the same per-token factors the recurrent form applies. Bound: 1e-6.
    static let tolerance = 1e-6

    @Test("the chunked form equals the recurrent one and the fp64 recurrence",
          arguments: [false, true], [1, 63, 64, 65, 130, 200])
    func chunkedEqualsRecurrent(perChannel: Bool, tokens: Int) {
        let x = Inputs(dk: 32, dv: 48, tokens: tokens, perChannel: perChannel, seed: UInt64(tokens) * 7 + (perChannel ? 1 : 0))
        let exact = Self.reference(x, exp: { (v: Double) in Foundation.exp(v) })
        var recurrentState = x.state, recurrentOutput = [Float](repeating: .nan, count: tokens * x.dv)
        x.withRun(output: &recurrentOutput) { run in
            recurrentState.withUnsafeMutableBufferPointer {
                recurrentDeltaRule(run, tokens: 0..<tokens, state: $0.baseAddress!, keyDimension: x.dk, valueDimension: x.dv)
            }
        }
        var chunkedState = x.state, chunkedOutput = [Float](repeating: .nan, count: tokens * x.dv)
        x.withRun(output: &chunkedOutput) { run in
            chunkedState.withUnsafeMutableBufferPointer {
                chunkedDeltaRule(run, tokens: tokens, state: $0.baseAddress!, keyDimension: x.dk, valueDimension: x.dv)
            }
        }
        let label = "\(perChannel ? "per channel" : "per head"), \(tokens) tokens"
        let errors = [Self.relativeError(recurrentOutput, exact.output), Self.relativeError(recurrentState, exact.state),
                      Self.relativeError(chunkedOutput, exact.output), Self.relativeError(chunkedState, exact.state)]
        #expect(errors.allSatisfy { $0 <= Self.tolerance }, "\(label): recurrent output, state; chunked output, state vs fp64: \(errors)")
        let against = Self.relativeError(chunkedOutput, recurrentOutput.map(Double.init))
        #expect(against <= Self.tolerance, "\(label): chunked vs recurrent \(against)")
    }

    @Test("the chunked form continues from a state: two runs equal one", arguments: [false, true])
    func chunkedContinues(perChannel: Bool) {
        let x = Inputs(dk: 16, dv: 16, tokens: 150, perChannel: perChannel, seed: 99)
        var whole = x.state, wholeOutput = [Float](repeating: .nan, count: 150 * 16)
        x.withRun(output: &wholeOutput) { run in
            whole.withUnsafeMutableBufferPointer { chunkedDeltaRule(run, tokens: 150, state: $0.baseAddress!, keyDimension: 16, valueDimension: 16) }
        }
        // 70 tokens, then the remaining 80 from the state the first run left.
        var split = x.state, splitOutput = [Float](repeating: .nan, count: 150 * 16)
        x.withRun(output: &splitOutput) { run in
            split.withUnsafeMutableBufferPointer { state in
                chunkedDeltaRule(run, tokens: 70, state: state.baseAddress!, keyDimension: 16, valueDimension: 16)
                let rest = run.dropping(70)
                chunkedDeltaRule(rest, tokens: 80, state: state.baseAddress!, keyDimension: 16, valueDimension: 16)
            }
        }
        let exact = Self.reference(x, exp: { (v: Double) in Foundation.exp(v) })
        #expect(Self.relativeError(splitOutput, exact.output) <= Self.tolerance)
        #expect(Self.relativeError(split, exact.state) <= Self.tolerance)
        #expect(Self.relativeError(splitOutput, wholeOutput.map(Double.init)) <= Self.tolerance)
    }

    /// Every kernel set this CPU runs, at the real head size (128 × 128) and at widths that
    /// exercise each column path (64-wide blocks, 16-wide blocks, single columns) and odd row
    /// counts: bit for bit the scalar fp32 loop, which rounds as the kernel does (a multiply,
    /// then an add; rows summed in order).
    @Test("the SIMD step equals the scalar reference bit for bit, every supported kernel set",
          arguments: [false, true], [(128, 128), (16, 16), (13, 97), (7, 3)])
    func simdStepEqualsScalar(perChannel: Bool, shape: (Int, Int)) {
        let (dk, dv) = shape
        let x = Inputs(dk: dk, dv: dv, tokens: 3, perChannel: perChannel, seed: UInt64(dk * 100 + dv))
        let scalar = Self.reference(x, exp: expf)
        for kernels in KernelDispatch.supported {
            var state = x.state, output = [Float](repeating: .nan, count: 3 * dv)
            var factors = [Float](repeating: 0, count: dk)
            for t in 0..<3 {
                for i in 0..<x.decayWidth { factors[i] = expf(x.decay[t * x.decayWidth + i]) }
                let row = t * x.rowStride
                x.rows.withUnsafeBufferPointer { r in
                    output.withUnsafeMutableBufferPointer { o in
                        kernels.deltaRuleStep(state: &state, keyDimension: dk, valueDimension: dv, query: r.baseAddress! + row,
                                              key: r.baseAddress! + row + dk, value: r.baseAddress! + row + 2 * dk, beta: x.beta[t],
                                              decay: factors, decayStride: perChannel ? 1 : 0, into: o.baseAddress! + t * dv)
                    }
                }
            }
            #expect(output == scalar.output && state == scalar.state, "\(kernels.name) \(dk) × \(dv)")
        }
    }
}

/// The linear-attention fixtures (three Gated DeltaNet or Kimi Delta Attention layers around
/// one full-attention layer, transformers-written) computed with each form of the delta rule
/// throughout (`DecoderModel.deltaRuleForm`): transformers' own prefill is the chunked form.
@Suite("Linear attention in either form of the delta rule equals transformers")
struct DeltaRuleFormTests {
    static let fixtures = ["qwen3-next-tiny", "kimi-linear-tiny", "ling-hybrid-tiny"]
    static let forms: [DeltaRuleForm] = [.recurrent, .chunked]

    func engine(_ fixture: String, form: DeltaRuleForm) throws -> InferenceEngine {
        try engineVariant(fixture) { $0.deltaRuleForm = form }
    }

    /// These random-weight fixtures amplify rounding (docs/linear-attention.md): transformers'
    /// own fp32 prefill differs from its fp64 run by up to 1.4e-4 (`qwen3-next-tiny`), and a
    /// delta-rule output that is ~1e-8 off in relative terms moves a logit by up to ~5e-5.
    /// Measured against transformers, prefill / decode: token by token 8.4e-5 / 5.9e-5
    /// (Qwen3-Next), 1.9e-5 / 4.2e-6 (Kimi-Linear), 7.4e-5 / 1.2e-5 (Ling); chunked 6.3e-5 /
    /// 6.7e-5, 1.3e-5 / 5.9e-6, 1.0e-4 / 9.5e-6. Bound: 2.5e-4, under the family's 1e-3.
    static let tolerance: Float = 2.5e-4

    @Test("each form alone: every prompt position, every decode step, greedy tokens", arguments: fixtures, forms)
    func formEqualsTransformers(fixture: String, form: DeltaRuleForm) async throws {
        let engine = try engine(fixture, form: form)
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        var prefill: Float = 0, decode: Float = 0
        for c in golden.cases {
            let expected = try rows(tensors.tensor("case\(c.index).prefill_logits"))
            let actual = try await engine.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            for (a, e) in zip(actual, expected) { prefill = max(prefill, maxAbsDifference(a, e)) }
            let steps = try rows(tensors.tensor("case\(c.index).generated_logits"))
            let collected = LogitsCollector()
            let result = try await engine.generate(
                GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens, expertsPerToken: c.experts, stopTokenIDs: []),
                onStepLogits: { collected.append($0) })
            for (a, e) in zip(collected.rows, steps) { decode = max(decode, maxAbsDifference(a, e)) }
            #expect(result.tokenIDs == c.greedyNewTokens, "\(fixture) \(form) case \(c.name)")
        }
        #expect(prefill <= Self.tolerance && decode <= Self.tolerance, "\(fixture) \(form): prefill \(prefill), decode \(decode)")
    }

    /// Measured: whole prompts 2.6e-5 (Qwen3-Next), 6.8e-6 (Kimi-Linear), 4.6e-5 (Ling); in
    /// steps of 33 against whole, 2.2e-5, 3.3e-6, 1.9e-5.
    @Test("the forms agree with each other on the longest prompt, whole and in steps", arguments: fixtures)
    func formsAgree(fixture: String) async throws {
        let (golden, _) = try GoldenSet(fixture: fixture, stem: "golden").load()
        let longest = golden.cases.max { $0.promptIDs.count < $1.promptIDs.count }!
        #expect(longest.promptIDs.count > deltaRuleChunk)
        let recurrent = try engine(fixture, form: .recurrent), chunked = try engine(fixture, form: .chunked)
        let a = try await recurrent.promptLogits(longest.promptIDs), b = try await chunked.promptLogits(longest.promptIDs)
        var worst: Float = 0
        for (x, y) in zip(a, b) { worst = max(worst, maxAbsDifference(x, y)) }
        // Chunked prefill in steps of 33 tokens: the second step starts from the first one's state.
        let cache = chunked.model.makeCache()
        var position = 0, stepped: Float = 0
        while position < longest.promptIDs.count {
            let tokens = Array(longest.promptIDs[position..<min(longest.promptIDs.count, position + 33)])
            let logits = try await chunked.model.forward([SequenceStep(cache: cache, tokens: tokens, logits: .all)], experts: chunked.experts)[0]
            let v = chunked.description.vocabularySize
            for i in tokens.indices { stepped = max(stepped, maxAbsDifference(Array(logits[(i * v)..<((i + 1) * v)]), b[position + i])) }
            position += tokens.count
        }
        #expect(worst <= 1e-4 && stepped <= 1e-4, "\(fixture): recurrent vs chunked \(worst), chunked in steps vs whole \(stepped)")
    }

    @Test("speculative decoding with the chunked form keeps each verified token's state: greedy output unchanged",
          arguments: fixtures)
    func speculation(fixture: String) async throws {
        let engine = try engine(fixture, form: .chunked)
        let (golden, _) = try GoldenSet(fixture: fixture, stem: "golden").load()
        try await expectSpeculationKeepsGreedyOutput(engine, cases: golden.cases.filter { $0.name.hasPrefix("default") }, fixture: fixture)
    }
}
