import Foundation
import JindouBenchmarks
import Testing

/// The latency model of docs/performance.md as arithmetic: what each term means, and that
/// fitting two measured points recovers the model that produced them.
@Suite struct LatencyModelTests {
    static let model = LatencyModel(moeLayers: 48, roundTripSeconds: 200e-6, bytesPerSecond: 125e6, bytesPerTokenPerLayer: 16_384,
                                    coordinatorFixedSeconds: 20e-3, coordinatorPerTokenSeconds: 0.5e-3,
                                    workerFixedSeconds: 0.3e-3, workerPerTokenSeconds: 20e-6)

    @Test func aStepIsCoordinatorTimePlusOneExchangePerMoELayer() {
        let m = Self.model
        let tokens = 8.0
        let exchange = 200e-6 + tokens * 16_384 / 125e6 + (0.3e-3 + 20e-6 * tokens)
        #expect(abs(m.exchangeSeconds(tokens: tokens) - exchange) < 1e-12)
        #expect(abs(m.stepSeconds(tokens: tokens) - (20e-3 + 0.5e-3 * tokens + 48 * exchange)) < 1e-12)
        #expect(abs(m.decodeTokensPerSecond(sequences: 8) - 8 / m.stepSeconds(tokens: 8)) < 1e-9)
    }

    @Test func overlapHidesTheExchangeUpToTheCoordinatorsWork() {
        var m = Self.model
        // Two micro-batches are never slower than the coordinator's own work on both halves…
        let two = m.stepSeconds(tokens: 32, microBatches: 2)
        #expect(two >= 2 * m.coordinatorSeconds(tokens: 16))
        // …and with a slow link they beat one batch, which waits for every exchange.
        m.roundTripSeconds = 2e-3
        #expect(m.stepSeconds(tokens: 32, microBatches: 2) < m.stepSeconds(tokens: 32, microBatches: 1))
        // Sharing cores, the workers' compute cannot hide behind the coordinator's.
        var shared = m
        shared.sharedCompute = true
        #expect(shared.stepSeconds(tokens: 32, microBatches: 2) >= m.stepSeconds(tokens: 32, microBatches: 2))
        #expect(m.stepSeconds(tokens: 1, microBatches: 2) == m.stepSeconds(tokens: 1, microBatches: 1))
    }

    @Test func speculationKeepsKTokensOfAStepOfOnePlusDTokens() {
        let m = Self.model
        let rate = m.decodeTokensPerSecond(sequences: 1, drafts: 3, tokensPerStep: 2.5)
        #expect(abs(rate - 2.5 / m.stepSeconds(tokens: 4)) < 1e-9)
        // At batch 1 on a network a step of 4 tokens costs far less than 4 steps of 1.
        #expect(rate > 1.5 * m.decodeTokensPerSecond(sequences: 1))
    }

    @Test func fittingTwoPointsRecoversTheModel() {
        let m = Self.model
        let points = [1.0, 32.0].map { b in
            (tokens: b, stepSeconds: m.stepSeconds(tokens: b), exchangeSeconds: Double(m.moeLayers) * m.exchangeSeconds(tokens: b))
        }
        let fitted = LatencyModel.fit(moeLayers: 48, roundTripSeconds: m.roundTripSeconds, bytesPerSecond: m.bytesPerSecond,
                                      bytesPerTokenPerLayer: m.bytesPerTokenPerLayer, points: points)
        for (a, b) in [(fitted.coordinatorFixedSeconds, m.coordinatorFixedSeconds), (fitted.coordinatorPerTokenSeconds, m.coordinatorPerTokenSeconds),
                       (fitted.workerFixedSeconds, m.workerFixedSeconds), (fitted.workerPerTokenSeconds, m.workerPerTokenSeconds)] {
            #expect(abs(a - b) < 1e-9)
        }
        // Moved onto another link, the same compute.
        let far = fitted.on(roundTripSeconds: 1e-3, bytesPerSecond: 1.25e9)
        #expect(far.coordinatorFixedSeconds == fitted.coordinatorFixedSeconds && far.roundTripSeconds == 1e-3)
    }

    /// Workers' time in touched experts: the expectation is right at its ends and in between,
    /// fitting recovers it, and it makes 8 tokens cost more than a line through 1 and 32 does.
    @Test func touchedExpertsSaturateAndFit() {
        let reads = LatencyModel.ExpertReads(experts: 128, perToken: 8, onWorker: 64)
        #expect(abs(reads.touched(tokens: 1) - 64 * (1 - pow(127.0 / 128, 8))) < 1e-12)
        #expect(reads.touched(tokens: 10_000) > 63.99 && reads.touched(tokens: 0) == 0)
        var m = Self.model
        m.expertReads = reads
        let points = [1.0, 32.0].map { b in
            (tokens: b, stepSeconds: m.stepSeconds(tokens: b), exchangeSeconds: Double(m.moeLayers) * m.exchangeSeconds(tokens: b))
        }
        let fitted = LatencyModel.fit(moeLayers: 48, roundTripSeconds: m.roundTripSeconds, bytesPerSecond: m.bytesPerSecond,
                                      bytesPerTokenPerLayer: m.bytesPerTokenPerLayer, points: points, expertReads: reads)
        #expect(abs(fitted.workerPerTokenSeconds - m.workerPerTokenSeconds) < 1e-9 && abs(fitted.workerFixedSeconds - m.workerFixedSeconds) < 1e-9)
        var linear = LatencyModel.fit(moeLayers: 48, roundTripSeconds: m.roundTripSeconds, bytesPerSecond: m.bytesPerSecond,
                                      bytesPerTokenPerLayer: m.bytesPerTokenPerLayer, points: points)
        linear.expertReads = nil
        #expect(fitted.stepSeconds(tokens: 8) > linear.stepSeconds(tokens: 8))
    }
}
