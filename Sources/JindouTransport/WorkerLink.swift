import JindouWire
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Errors of a connection to a peer, naming the peer.
public enum LinkError: Error, Equatable, CustomStringConvertible {
    case unreachable(peer: String, reason: String)
    case closed(peer: String)
    case timedOut(peer: String, seconds: Double)
    case protocolError(peer: String, error: WireError)
    case broken(peer: String, reason: String)

    public var description: String {
        switch self {
        case .unreachable(let peer, let reason): "worker \(peer) is unreachable: \(reason)"
        case .closed(let peer): "connection to worker \(peer) closed"
        case .timedOut(let peer, let seconds): "worker \(peer) did not answer within \(seconds) s"
        case .protocolError(let peer, let error): "worker \(peer): \(error)"
        case .broken(let peer, let reason): "link to worker \(peer) broke: \(reason)"
        }
    }
}

/// A connection to one worker that exchanges request frames for reply frames.
///
/// The seam of DESIGN invariant 4: dispatch/combine is written against this protocol;
/// TCP is one implementation, RDMA or shared memory would be others.
public protocol WorkerLink: AnyObject, Sendable {
    /// The peer as configured (address, later its name).
    var peer: String { get }
    /// Sends `frame` and waits for the frame answering it.
    func exchange(_ frame: Frame) async throws -> Frame
    /// Whether the connection is still usable.
    var isActive: Bool { get }
    /// What carries the frames: "tcp", "tls" or "shm" (for status and logs).
    var transport: String { get }
    func close() async
}

/// A TCP connection on SwiftNIO: TCP_NODELAY, one persistent connection per worker,
/// replies matched to requests in order (requests may be pipelined).
public final class TCPWorkerLink: WorkerLink {
    public let peer: String
    public let transport: String
    private let channel: Channel
    private let timeout: TimeAmount

    private init(peer: String, channel: Channel, timeout: TimeAmount, transport: String) {
        self.peer = peer
        self.channel = channel
        self.timeout = timeout
        self.transport = transport
    }

    /// Completes when the connection closes (either end, or the peer process died).
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// This end's IP address of the connection (picks the RDMA GID of the same interface).
    public var localIPAddress: String? { channel.localAddress?.ipAddress }

    /// Connects to `endpoint`. `timeoutSeconds` bounds both the connect and every exchange.
    /// With `tls`, the link is mutual TLS (see `NodeTLS`).
    public static func connect(
        to endpoint: Endpoint, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeoutSeconds: Double = 60, maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength,
        tls: NIOSSLContext? = nil
    ) async throws -> TCPWorkerLink {
        let peer = endpoint.description
        let timeout = TimeAmount.nanoseconds(Int64(timeoutSeconds * 1e9))
        do {
            let channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.socketOption(.so_keepalive), value: 1)
                .connectTimeout(.seconds(Int64(max(1, min(timeoutSeconds, 10)))))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: nil))
                        }
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(FrameDecodingHandler(maximumPayloadLength: maximumPayloadLength)))
                        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncodingHandler()))
                        try channel.pipeline.syncOperations.addHandler(RequestReplyHandler(peer: peer))
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
            return TCPWorkerLink(peer: peer, channel: channel, timeout: timeout, transport: tls == nil ? "tcp" : "tls")
        } catch {
            throw LinkError.unreachable(peer: peer, reason: "\(error)")
        }
    }

    public var isActive: Bool { channel.isActive }

    public func exchange(_ frame: Frame) async throws -> Frame {
        guard channel.isActive else { throw LinkError.closed(peer: peer) }
        let promise = channel.eventLoop.makePromise(of: Frame.self)
        let peer = self.peer
        let timeout = self.timeout
        let seconds = Double(timeout.nanoseconds) / 1e9
        let channel = self.channel
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            // Replies can no longer be matched to requests: give up on the connection.
            promise.fail(LinkError.timedOut(peer: peer, seconds: seconds))
            channel.close(promise: nil)
        }
        // If the write itself fails (the connection closed meanwhile), fail at once rather
        // than at the deadline.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { _ in promise.fail(LinkError.closed(peer: peer)) }
        channel.writeAndFlush(PendingExchange(frame: frame, promise: promise), promise: written)
        defer { deadline.cancel() }
        return try await promise.futureResult.get()
    }

    public func close() async {
        try? await channel.close()
    }
}

/// A request and the promise its reply completes.
struct PendingExchange {
    let frame: Frame
    let promise: EventLoopPromise<Frame>
}

/// Matches inbound frames to outstanding requests in order; fails them all when the
/// connection dies, so no caller waits forever.
final class RequestReplyHandler: ChannelDuplexHandler {
    typealias InboundIn = InboundFrame
    typealias OutboundIn = PendingExchange
    typealias OutboundOut = Frame

    private let peer: String
    private var waiting = CircularBuffer<EventLoopPromise<Frame>>()
    private var closed = false

    init(peer: String) { self.peer = peer }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let pending = unwrapOutboundIn(data)
        if closed {
            // channelInactive has already failed the waiters; nobody would fail this one.
            pending.promise.fail(LinkError.closed(peer: peer))
            promise?.fail(LinkError.closed(peer: peer))
            return
        }
        waiting.append(pending.promise)
        context.write(wrapOutboundOut(pending.frame), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let promise = waiting.popFirst() else {
            // A frame nobody asked for: the peer is confused; drop the connection.
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .frame(let frame):
            promise.succeed(frame)
        case .invalid(let error):
            promise.fail(LinkError.protocolError(peer: peer, error: error.error))
            if !error.recoverable { context.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        failAll(LinkError.closed(peer: peer))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(LinkError.unreachable(peer: peer, reason: "\(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
