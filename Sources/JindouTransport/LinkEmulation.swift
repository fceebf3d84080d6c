import Foundation
import NIOCore
import NIOPosix

/// An emulated network link: added round-trip time, jitter and a line rate.
///
/// These kernels have no `sch_netem`, so delay cannot come from `tc`; `LinkRelay` applies
/// it in user space to the TCP bytes it forwards. Bandwidth can be shaped in the relay
/// (a serial line at `bitsPerSecond`) or by `tc … tbf` on the namespace harness's veth
/// pairs, which works on these kernels.
public struct LinkProfile: Sendable, Codable, Equatable, CustomStringConvertible {
    /// Added round-trip time, in seconds; each direction is delayed by half.
    public var roundTripSeconds: Double
    /// Half-width of the uniform jitter added to each direction's delay, in seconds.
    public var jitterSeconds: Double
    /// Line rate of each direction, or nil for none (shaped elsewhere, or unshaped).
    public var bitsPerSecond: Double?

    public init(roundTripSeconds: Double = 0, jitterSeconds: Double = 0, bitsPerSecond: Double? = nil) {
        self.roundTripSeconds = roundTripSeconds
        self.jitterSeconds = jitterSeconds
        self.bitsPerSecond = bitsPerSecond
    }

    /// Parses the command-line spellings: `--rtt 200us`, `--jitter 20us`, `--rate 1gbit`.
    public init(rtt: String?, jitter: String? = nil, rate: String? = nil) throws {
        self.init(roundTripSeconds: try rtt.map(LinkUnits.seconds) ?? 0, jitterSeconds: try jitter.map(LinkUnits.seconds) ?? 0,
                  bitsPerSecond: try rate.map(LinkUnits.bitsPerSecond))
        guard jitterSeconds <= roundTripSeconds / 2 else {
            throw LinkUnitError(text: jitter ?? "", reason: "jitter must not exceed the one-way delay (half the RTT)")
        }
    }

    /// Whether the relay has anything to do (otherwise connect directly).
    public var isIdentity: Bool { roundTripSeconds == 0 && jitterSeconds == 0 && bitsPerSecond == nil }

    public var description: String {
        var parts = ["RTT +\(LinkUnits.format(seconds: roundTripSeconds))"]
        if jitterSeconds > 0 { parts.append("jitter ±\(LinkUnits.format(seconds: jitterSeconds))") }
        if let bitsPerSecond { parts.append(LinkUnits.format(bitsPerSecond: bitsPerSecond)) }
        return parts.joined(separator: ", ")
    }
}

/// A duration or rate that does not parse.
public struct LinkUnitError: Error, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "'\(text)': \(reason)" }
}

/// tc's spellings of durations (`50us`, `1ms`, `0.2ms`, `1s`) and rates (`1gbit`, `100mbit`).
public enum LinkUnits {
    public static func seconds(_ text: String) throws -> Double {
        let units: [(String, Double)] = [("us", 1e-6), ("µs", 1e-6), ("usec", 1e-6), ("ms", 1e-3), ("msec", 1e-3),
                                         ("ns", 1e-9), ("s", 1), ("sec", 1)]
        let lower = text.lowercased()
        if let value = Double(lower), value == 0 { return 0 }
        for (suffix, scale) in units.sorted(by: { $0.0.count > $1.0.count }) where lower.hasSuffix(suffix) {
            guard let value = Double(lower.dropLast(suffix.count)), value >= 0, value.isFinite else { break }
            return value * scale
        }
        throw LinkUnitError(text: text, reason: "expected a duration such as 50us, 1ms or 0 (units ns, us, ms, s)")
    }

    public static func bitsPerSecond(_ text: String) throws -> Double {
        let units: [(String, Double)] = [("kbit", 1e3), ("mbit", 1e6), ("gbit", 1e9), ("bit", 1)]
        let lower = text.lowercased()
        for (suffix, scale) in units where lower.hasSuffix(suffix) {
            guard let value = Double(lower.dropLast(suffix.count)), value > 0, value.isFinite else { break }
            return value * scale
        }
        throw LinkUnitError(text: text, reason: "expected a rate such as 100mbit, 1gbit or 10gbit")
    }

    public static func format(seconds: Double) -> String {
        if seconds == 0 { return "0" }
        if seconds < 1e-3 { return String(format: "%.0f µs", seconds * 1e6) }
        if seconds < 1 { return String(format: "%.3g ms", seconds * 1e3) }
        return String(format: "%.3g s", seconds)
    }

    public static func format(bitsPerSecond: Double) -> String {
        bitsPerSecond >= 1e9 ? String(format: "%.3g Gb/s", bitsPerSecond / 1e9) : String(format: "%.3g Mb/s", bitsPerSecond / 1e6)
    }
}

/// The timing of one direction of an emulated link: a serial line at the profile's rate
/// followed by a propagation delay with jitter. Bytes leave in order (TCP is a byte
/// stream, so jitter may bunch chunks but never reorder them).
public struct LinkDirectionModel: Sendable {
    public let profile: LinkProfile
    private var lineFree: UInt64 = 0
    private var lastRelease: UInt64 = 0
    private var random: UInt64

    public init(profile: LinkProfile, seed: UInt64) {
        self.profile = profile
        random = seed &+ 0x9E37_79B9_7F4A_7C15
    }

    /// When `bytes` that arrived at `now` (monotonic nanoseconds) reach the far end.
    public mutating func release(bytes: Int, arrivingAt now: UInt64) -> UInt64 {
        var sent = now
        if let rate = profile.bitsPerSecond {
            sent = max(now, lineFree) + UInt64(Double(bytes) * 8 / rate * 1e9)
            lineFree = sent
        }
        var delay = profile.roundTripSeconds / 2
        if profile.jitterSeconds > 0 { delay += (nextUniform() * 2 - 1) * profile.jitterSeconds }
        let release = max(lastRelease, sent + UInt64(max(0, delay) * 1e9))
        lastRelease = release
        return release
    }

    /// SplitMix64, so a seed reproduces a jitter sequence.
    private mutating func nextUniform() -> Double {
        random &+= 0x9E37_79B9_7F4A_7C15
        var z = random
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53)
    }
}

/// A TCP relay that forwards every connection on `listen` to `target` through an
/// emulated link (both directions), for benchmarks and tests on one machine. Each
/// accepted connection opens its own connection to the target on the same event loop;
/// a direction stops reading while more than `bufferLimit` bytes are held, so a fast
/// sender meets the link's bandwidth, not unbounded memory.
public final class LinkRelay: Sendable {
    public let profile: LinkProfile
    public let target: Endpoint
    private let server: Channel

    /// Bytes one direction may hold before it stops reading.
    public static let bufferLimit = 8 << 20

    public init(listen: Endpoint, target: Endpoint, profile: LinkProfile, seed: UInt64 = 1,
                group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        self.profile = profile
        self.target = target
        server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                inbound.pipeline.addHandler(RelayAcceptHandler { Self.connect(inbound, to: target, profile: profile, seed: seed) })
            }
            .bind(host: listen.host, port: listen.port).get()
    }

    /// The address actually bound (port 0 picks a free port).
    public var endpoint: Endpoint {
        Endpoint(host: server.localAddress?.ipAddress ?? "127.0.0.1", port: server.localAddress?.port ?? 0)
    }

    public func close() async {
        try? await server.close()
    }

    /// Connects the far side once `inbound` is active (reads start only then).
    private static func connect(_ inbound: Channel, to target: Endpoint, profile: LinkProfile, seed: UInt64) {
        let loop = inbound.eventLoop
        let toTarget = RelayDirection(profile: profile, seed: seed, loop: loop)
        let toClient = RelayDirection(profile: profile, seed: seed &+ 1, loop: loop)
        return ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: false)
            .connectTimeout(.seconds(10))
            .connect(host: target.host, port: target.port)
            .flatMap { outbound in
                toTarget.attach(source: inbound, sink: outbound)
                toClient.attach(source: outbound, sink: inbound)
                return inbound.pipeline.addHandler(RelayHandler(direction: toTarget)).flatMap {
                    outbound.pipeline.addHandler(RelayHandler(direction: toClient))
                }.map {
                    toTarget.startReading()
                    toClient.startReading()
                }
            }
            .whenFailure { _ in inbound.close(promise: nil) }
    }
}

/// One direction of a relayed connection. Lives on one event loop.
final class RelayDirection: @unchecked Sendable {
    // @unchecked: every member is touched only on `loop` (handlers and scheduled tasks).
    private var model: LinkDirectionModel
    private let loop: EventLoop
    private var source: Channel?
    private var sink: Channel?
    private var heldBytes = 0
    private var reading = false
    private var sourceClosed = false

    init(profile: LinkProfile, seed: UInt64, loop: EventLoop) {
        model = LinkDirectionModel(profile: profile, seed: seed)
        self.loop = loop
    }

    func attach(source: Channel, sink: Channel) {
        self.source = source
        self.sink = sink
    }

    func startReading() {
        loop.assertInEventLoop()
        reading = true
        source?.read()
    }

    /// Bytes arrived from the source: forward them when the link would deliver them.
    func forward(_ buffer: ByteBuffer) {
        let now = NIODeadline.now().uptimeNanoseconds
        let release = model.release(bytes: buffer.readableBytes, arrivingAt: now)
        heldBytes += buffer.readableBytes
        let bytes = buffer.readableBytes
        let deliver = { [self] in
            let written = loop.makePromise(of: Void.self)
            sink?.writeAndFlush(buffer, promise: written)
            written.futureResult.whenComplete { [self] _ in
                heldBytes -= bytes
                if !reading && heldBytes < LinkRelay.bufferLimit / 2 && !sourceClosed {
                    reading = true
                    source?.read()
                }
                closeSinkIfDrained()
            }
        }
        if release <= now {
            deliver()
        } else {
            loop.scheduleTask(deadline: .uptimeNanoseconds(release)) { deliver() }
        }
    }

    /// The source is done reading one batch: ask for more unless the link is full.
    func readComplete() {
        if heldBytes < LinkRelay.bufferLimit {
            source?.read()
        } else {
            reading = false
        }
    }

    /// The source closed: close the sink once everything held has been delivered.
    func sourceDidClose() {
        sourceClosed = true
        closeSinkIfDrained()
    }

    private func closeSinkIfDrained() {
        if sourceClosed && heldBytes == 0 { sink?.close(promise: nil) }
    }
}

/// Starts the relay of an accepted connection once it is active, then leaves the pipeline.
final class RelayAcceptHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: NIO calls a handler only on its channel's event loop.
    typealias InboundIn = ByteBuffer
    let onActive: () -> Void

    init(onActive: @escaping () -> Void) { self.onActive = onActive }

    func channelActive(context: ChannelHandlerContext) {
        onActive()
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

final class RelayHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: NIO calls a handler only on its channel's event loop.
    typealias InboundIn = ByteBuffer
    let direction: RelayDirection

    init(direction: RelayDirection) { self.direction = direction }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        direction.forward(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        direction.readComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        direction.sourceDidClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Round-trip time and bulk goodput of a path, measured by echoing bytes across it.
public struct LinkMeasurement: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Median, 10th and 90th percentile round trip of a small message, in seconds.
    public var roundTripSeconds: Double
    public var roundTripP10Seconds: Double
    public var roundTripP90Seconds: Double
    /// Bytes per second one direction carried while echoing `bulkBytes`, with the
    /// small-message round trip subtracted.
    public var bytesPerSecond: Double
    public var samples: Int
    public var bulkBytes: Int

    public var description: String {
        String(format: "RTT %@ (p10 %@, p90 %@), %.3g Gb/s echo goodput",
               LinkUnits.format(seconds: roundTripSeconds), LinkUnits.format(seconds: roundTripP10Seconds),
               LinkUnits.format(seconds: roundTripP90Seconds), bytesPerSecond * 8 / 1e9)
    }
}

public enum LinkProbe {
    /// Measures a path through `roundTrip(bytes)`, which must send `bytes` and return once
    /// they (or an answer of the same size) came back. A `storeAndForward` far end (a
    /// worker answering a whole PING frame) sends back only after receiving everything, so
    /// the bulk bytes cross the link twice in sequence; a streaming echo overlaps them.
    public static func measure(samples: Int = 200, smallBytes: Int = 64, bulkBytes: Int = 4 << 20, bulkRepetitions: Int = 5,
                               storeAndForward: Bool = false,
                               roundTrip: (Int) async throws -> Void) async throws -> LinkMeasurement {
        try await roundTrip(smallBytes)
        var times: [Double] = []
        times.reserveCapacity(samples)
        for _ in 0..<samples {
            let start = ContinuousClock.now
            try await roundTrip(smallBytes)
            times.append(seconds(ContinuousClock.now - start))
        }
        times.sort()
        let rtt = times[times.count / 2]
        try await roundTrip(bulkBytes)
        var bulk: [Double] = []
        for _ in 0..<bulkRepetitions {
            let start = ContinuousClock.now
            try await roundTrip(bulkBytes)
            bulk.append(seconds(ContinuousClock.now - start))
        }
        bulk.sort()
        let transfer = max(bulk[bulk.count / 2] - rtt, 1e-9)
        return LinkMeasurement(roundTripSeconds: rtt, roundTripP10Seconds: times[times.count / 10],
                               roundTripP90Seconds: times[times.count * 9 / 10], bytesPerSecond: Double((storeAndForward ? 2 : 1) * bulkBytes) / transfer,
                               samples: samples, bulkBytes: bulkBytes)
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
    }
}

/// A TCP echo server (`jindouctl link echo`), the far end of `EchoClient` probes.
public final class EchoServer: Sendable {
    private let server: Channel

    public init(listen: Endpoint, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { $0.pipeline.addHandler(EchoHandler()) }
            .bind(host: listen.host, port: listen.port).get()
    }

    public var endpoint: Endpoint {
        Endpoint(host: server.localAddress?.ipAddress ?? "127.0.0.1", port: server.localAddress?.port ?? 0)
    }

    public func close() async { try? await server.close() }
}

final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

/// One connection to an `EchoServer`: `roundTrip(bytes)` sends that many bytes and waits
/// until as many came back.
public final class EchoClient: Sendable {
    private let channel: Channel
    private let counter: EchoCounter

    public init(to endpoint: Endpoint, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        let counter = EchoCounter()
        self.counter = counter
        channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { $0.pipeline.addHandler(counter) }
            .connect(host: endpoint.host, port: endpoint.port).get()
    }

    public func roundTrip(_ bytes: Int) async throws {
        let channel = self.channel
        let counter = self.counter
        let done: EventLoopFuture<Void> = channel.eventLoop.flatSubmit {
            let promise = channel.eventLoop.makePromise(of: Void.self)
            counter.expect(bytes, promise: promise)
            var buffer = channel.allocator.buffer(capacity: bytes)
            buffer.writeRepeatingByte(0x4A, count: bytes)
            channel.writeAndFlush(buffer, promise: nil)
            return promise.futureResult
        }
        try await done.get()
    }

    public func close() async { try? await channel.close() }
}

final class EchoCounter: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: its state is touched only on the channel's event loop.
    typealias InboundIn = ByteBuffer
    private var remaining = 0
    private var promise: EventLoopPromise<Void>?
    private var closed = false

    /// Completes `promise` once `bytes` more came back; at once with an error if the
    /// connection is already gone (it may close before anyone waits, e.g. a relay whose
    /// target refused it).
    func expect(_ bytes: Int, promise: EventLoopPromise<Void>) {
        guard !closed else {
            promise.fail(ChannelError.ioOnClosedChannel)
            return
        }
        remaining = bytes
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        remaining -= unwrapInboundIn(data).readableBytes
        if remaining <= 0, let promise {
            self.promise = nil
            promise.succeed()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        promise?.fail(ChannelError.ioOnClosedChannel)
        promise = nil
    }
}
