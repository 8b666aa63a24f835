import CTACore
import Foundation
import Logging
public import Hummingbird

extension API {
    /// The bearer token of a request (`Authorization: Bearer …`), or nil.
    public static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingCharacters(in: .whitespaces)
    }

    /// The user a request is made by: 401 for no token, an unknown, expired or revoked token, a disabled or deleted
    /// user, and for an enrollment token (agents' tokens are refused on user endpoints).
    public func user(_ request: Request) async throws(APIError) -> Principal {
        guard let token = Self.bearerToken(request) else { throw .unauthenticated("no bearer token") }
        return try await user(token: token)
    }

    /// The user a token belongs to (for the live feed, which may take it from `?token=`).
    public func user(token: String) async throws(APIError) -> Principal {
        guard Secrets.kind(of: token) == .user else { throw .unauthenticated("not a user API token") }
        let now = Date()
        let record: TokenRecord
        let user: UserRecord
        do {
            guard let found = try await store.token(hash: Secrets.tokenHash(token)) else {
                throw APIError.unauthenticated("unknown token")
            }
            record = found
            guard record.revokedAt == nil else { throw APIError.unauthenticated("the token was revoked") }
            if let expiresAt = record.expiresAt, expiresAt <= now { throw APIError.unauthenticated("the token expired") }
            guard let owner = try await store.user(record.user), !owner.disabled else {
                throw APIError.unauthenticated("the token's user is disabled or deleted")
            }
            user = owner
            try await store.touchToken(record, at: now)
        } catch let error as APIError {
            throw error
        } catch {
            throw unavailable(error)
        }
        return Principal(user: user.name, role: user.role, groups: Set(user.groups), tokenID: record._id)
    }

    /// The agent enrollment token of a request: 401 for anything else (user tokens included).
    public func agent(_ request: Request) async throws(APIError) -> EnrollmentTokenRecord {
        guard let token = Self.bearerToken(request) else { throw .unauthenticated("no bearer token") }
        guard Secrets.kind(of: token) == .enrollment else { throw .unauthenticated("not an agent enrollment token") }
        let now = Date()
        do {
            guard let record = try await store.enrollmentToken(hash: Secrets.tokenHash(token)), record.isValid(at: now)
            else { throw APIError.unauthenticated("unknown, expired or revoked enrollment token") }
            try await store.touchEnrollmentToken(record, at: now)
            return record
        } catch let error as APIError {
            throw error
        } catch {
            throw unavailable(error)
        }
    }

    /// Throws unless the role may do the action (for actions not about one object).
    func require(_ action: Action, _ principal: Principal) throws(APIError) {
        guard Policy.decide(action, principal: principal) == .allow else {
            throw .forbidden("role \(principal.role.rawValue) may not do this")
        }
    }

    /// Throws 404 (`what` not found) for an object outside the user's groups, 403 for one the user may read but
    /// not act on.
    func require(_ action: Action, _ principal: Principal, owners: [String], notFound what: String) throws(APIError) {
        switch Policy.decide(action, principal: principal, owners: owners) {
        case .allow: return
        case .hidden: throw .notFound("no \(what)")
        case .forbidden:
            throw .forbidden(
                principal.role == .admin || Policy.roleAllows(principal.role, action)
                    ? "\(what) does not belong to one of your groups" : "role \(principal.role.rawValue) may not do this")
        }
    }

    /// A database failure, answered 503.
    func unavailable(_ error: any Error) -> APIError {
        logger.warning("store unavailable", metadata: ["cta.error": "\(error)"])
        return APIError(.unavailable, "the database is not available; try again")
    }
}
