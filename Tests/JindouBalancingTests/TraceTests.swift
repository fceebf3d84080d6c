import Foundation
import Testing
@testable import JindouBalancing

/// A small synthetic trace and a scratch path for file tests.
enum Fixtures {
    static let small = SyntheticRouting(
        experts: 16, layers: 3, topK: 4,
        parameters: SyntheticTraceParameters(seed: 7, zipf: 1.2, tokensPerStep: 5, shiftEvery: 2))

    /// The issue-10 workload: Zipf 1.2 over 128 experts, 48 layers, top-8, 64 tokens per step.
    static let zipfRouting = SyntheticRouting(
        experts: 128, layers: 48, topK: 8,
        parameters: SyntheticTraceParameters(seed: 1, zipf: 1.2, tokensPerStep: 64, shiftEvery: 0))
    static let zipfTrace = zipfRouting.generate(tokens: 128 * 64)

    static func scratchPath(_ name: String) -> String {
        NSTemporaryDirectory() + "jindou-balancing-\(UUID().uuidString)-\(name)"
    }
}

@Suite("Routing trace files")
struct TraceFileTests {
    @Test("a written trace reads back equal, synthetic parameters included")
    func roundTrip() throws {
        let trace = Fixtures.small.generate(tokens: 23)  // a short last step
        let path = Fixtures.scratchPath("round.trace")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try trace.write(path: path)
        let back = try RoutingTrace.read(path: path)
        #expect(back == trace)
        #expect(back.tokenCount == 23)
        #expect(back.steps.last?.tokens == 3)
    }

    @Test("the recorder writes what the router chose, layer by layer")
    func recorder() throws {
        let trace = Fixtures.small.generate(tokens: 10)
        let path = Fixtures.scratchPath("recorded.trace")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let header = TraceHeader(experts: 16, layers: 3, topK: 4)
        let recorder = TraceRecorder(writer: try TraceWriter(path: path, header: header))
        for step in trace.steps {
            recorder.beginStep(tokens: step.tokens)
            let perLayer = step.tokens * 4
            for layer in 0..<3 {
                try recorder.record(layer: layer, experts: step.choices[(layer * perLayer)..<((layer + 1) * perLayer)].map { Int32($0) })
            }
            try recorder.endStep()
        }
        try recorder.writer.close()
        let back = try RoutingTrace.read(path: path)
        #expect(back.header == header)
        #expect(back.steps == trace.steps)
        recorder.beginStep(tokens: 1)
        #expect(throws: TraceError.self) { try recorder.record(layer: 1, experts: [0, 1, 2, 3]) }
        #expect(throws: TraceError.self) { try recorder.record(layer: 0, experts: [0, 1, 2, 99]) }
    }

    @Test("corrupt files fail with an error naming the step")
    func corruption() throws {
        let trace = Fixtures.small.generate(tokens: 20)
        let path = Fixtures.scratchPath("corrupt.trace")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try trace.write(path: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerBytes = 8 + 5 * 4 + 24 + 4
        let stepBytes = 4 + 3 * 5 * 4 * 2 + 4

        var flipped = good
        flipped[headerBytes + stepBytes + 10] ^= 0x01  // inside step 1
        try flipped.write(to: URL(fileURLWithPath: path))
        #expect(throws: TraceError.checksumMismatch(path: path, step: 1)) { try RoutingTrace.read(path: path) }

        try good.prefix(good.count - 7).write(to: URL(fileURLWithPath: path))
        #expect(throws: TraceError.truncated(path: path, step: 3)) { try RoutingTrace.read(path: path) }

        var badMagic = good
        badMagic[0] = UInt8(ascii: "X")
        try badMagic.write(to: URL(fileURLWithPath: path))
        #expect(throws: TraceError.notATrace(path: path)) { try RoutingTrace.read(path: path) }

        var badHeader = good
        badHeader[12] ^= 0x40  // the expert count, under the header CRC
        try badHeader.write(to: URL(fileURLWithPath: path))
        #expect(throws: TraceError.self) { try RoutingTrace.read(path: path) }

        // A well-formed step naming an expert the trace does not have.
        let header = TraceHeader(experts: 16, layers: 1, topK: 2)
        let writer = try TraceWriter(path: path, header: header)
        try writer.append(TraceStep(tokens: 1, choices: [3, 40]))
        try writer.close()
        #expect(throws: TraceError.expertOutOfRange(path: path, step: 0, layer: 0, expert: 40, experts: 16)) {
            try RoutingTrace.read(path: path)
        }
    }
}

@Suite("Synthetic skewed traces")
struct SyntheticTraceTests {
    @Test("the same seed gives the same trace; another seed another")
    func determinism() {
        let a = Fixtures.small.generate(tokens: 40)
        let b = Fixtures.small.generate(tokens: 40)
        var other = Fixtures.small.parameters
        other.seed = 8
        let c = SyntheticRouting(experts: 16, layers: 3, topK: 4, parameters: other).generate(tokens: 40)
        #expect(a == b)
        #expect(a != c)
    }

    @Test("every token chooses top-k distinct experts, best score first")
    func distinct() {
        let trace = Fixtures.small.generate(tokens: 40)
        for step in trace.steps {
            for i in stride(from: 0, to: step.choices.count, by: 4) {
                #expect(Set(step.choices[i..<(i + 4)]).count == 4)
            }
        }
    }

    @Test("first choices follow Zipf(s): rank r is chosen with probability r^-s / H")
    func zipfSkew() {
        let routing = Fixtures.zipfRouting
        let trace = Fixtures.zipfTrace
        let hot = routing.hotSet(layer: 0, epoch: 0)
        var firstChoices = [Int](repeating: 0, count: 128)
        for step in trace.steps {
            for t in 0..<step.tokens { firstChoices[Int(step.choices[t * 8])] += 1 }
        }
        let n = Double(trace.tokenCount)
        for rank in [0, 1, 4, 20] {
            let p = exp(routing.logProbabilityOfRank[rank])
            let sigma = (n * p * (1 - p)).squareRoot()
            #expect(abs(Double(firstChoices[hot[rank]]) - n * p) < 5 * sigma, "rank \(rank)")
        }
        // Layers have different hot sets.
        #expect(routing.hotSet(layer: 0, epoch: 0) != routing.hotSet(layer: 1, epoch: 0))
    }

    @Test("a shifting hot set changes every shiftEvery steps")
    func shifting() {
        let routing = Fixtures.small
        #expect(routing.epoch(ofStep: 1) == 0 && routing.epoch(ofStep: 2) == 1)
        #expect(routing.hotSet(layer: 0, epoch: 0) != routing.hotSet(layer: 0, epoch: 1))
    }
}
