import CTACore
import Foundation
import Hummingbird
import Synchronization

// Identity: whoami, login, users, groups, API tokens, enrollment tokens.

extension API {
    static let roleNames = Role.allCases.map(\.rawValue)
    static let expiresInMs = BodySchema.integer(1...(10 * 365 * 86_400_000))

    func addIdentityRoutes(to router: Router<APIRequestContext>) {
        router.get("/v1/whoami") { request, _ in
            let principal = try await self.user(request)
            return JSON.response([
                "user": .string(principal.user), "role": .string(principal.role.rawValue),
                "groups": .array(principal.groups.sorted().map { .string($0) }), "tokenId": .string(principal.tokenID),
            ] as [String: JSONValue])
        }

        router.post("/v1/login") { request, context in try await self.login(request, context: context) }

        // Users (admin).
        let userSchema = BodySchema.object([
            "name": .required(.string(maxLength: 128, rule: Rules.name)),
            "role": .required(.oneOf(Self.roleNames)),
            "groups": .optional(.array(.string(maxLength: 128, rule: Rules.name), maxCount: 100)),
            "disabled": .optional(.bool),
            "password": .optional(.string(maxLength: 1024, rule: { $0.count < 8 ? "must be at least 8 characters" : nil })),
        ])
        router.get("/v1/users") { request, _ in
            try self.require(.manageUsers, try await self.user(request))
            let (items, next) = try await self.store.usersPage(try request.page())
            return JSON.response(Page(items: items.map(UserView.init), next: next?.encoded))
        }
        router.post("/v1/users") { request, _ in
            try self.require(.manageUsers, try await self.user(request))
            let body = try await self.json(request, userSchema)
            let name = body["name"]!.stringValue!
            var user = UserRecord(
                name: name, role: Role(rawValue: body["role"]!.stringValue!)!, groups: body["groups"]?.stringArray ?? [],
                disabled: body["disabled"]?.boolValue ?? false, at: Date())
            try await self.checkGroupsExist(user.groups, field: "groups")
            if let password = body["password"]?.stringValue {
                user.passwordHash = await self.hashPassword(password)
            }
            guard try await self.store.createUser(user) else { throw APIError.conflict("user \(name) exists") }
            return JSON.response(UserView(user), status: .created)
        }
        router.get("/v1/users/:name") { request, context in
            try self.require(.manageUsers, try await self.user(request))
            guard let user = try await self.store.user(context.parameter("name")) else {
                throw APIError.notFound("no user \(context.parameter("name"))")
            }
            return JSON.response(UserView(user))
        }
        router.patch("/v1/users/:name") { request, context in
            try self.require(.manageUsers, try await self.user(request))
            let schema = BodySchema.object([
                "role": .optional(.oneOf(Self.roleNames)),
                "groups": .optional(.array(.string(maxLength: 128, rule: Rules.name), maxCount: 100)),
                "disabled": .optional(.bool),
                "password": .optional(.string(maxLength: 1024, rule: { $0.count < 8 ? "must be at least 8 characters" : nil })),
            ])
            let body = try await self.json(request, schema)
            guard var user = try await self.store.user(context.parameter("name")) else {
                throw APIError.notFound("no user \(context.parameter("name"))")
            }
            if let role = body["role"]?.stringValue { user.role = Role(rawValue: role)! }
            if let groups = body["groups"]?.stringArray {
                try await self.checkGroupsExist(groups, field: "groups")
                user.groups = groups
            }
            if let disabled = body["disabled"]?.boolValue { user.disabled = disabled }
            if let password = body["password"]?.stringValue { user.passwordHash = await self.hashPassword(password) }
            user.updatedAt = Date()
            try await self.store.replaceUser(user)
            return JSON.response(UserView(user))
        }
        router.delete("/v1/users/:name") { request, context in
            let principal = try await self.user(request)
            try self.require(.manageUsers, principal)
            let name = context.parameter("name")
            guard name != principal.user else { throw APIError.conflict("you cannot delete yourself") }
            guard try await self.store.deleteUser(name, at: Date()) else { throw APIError.notFound("no user \(name)") }
            return JSON.empty(.noContent)
        }

        // Groups (admin writes, everyone reads).
        router.get("/v1/groups") { request, _ in
            _ = try await self.user(request)
            let (items, next) = try await self.store.groupsPage(try request.page())
            return JSON.response(Page(items: items.map(GroupView.init), next: next?.encoded))
        }
        router.post("/v1/groups") { request, _ in
            try self.require(.manageGroups, try await self.user(request))
            let body = try await self.json(
                request,
                .object([
                    "name": .required(.string(maxLength: 128, rule: Rules.name)),
                    "description": .optional(.string(maxLength: 4096)),
                ]))
            let group = GroupRecord(
                name: body["name"]!.stringValue!, description: body["description"]?.stringValue ?? "", at: Date())
            guard try await self.store.createGroup(group) else { throw APIError.conflict("group \(group._id) exists") }
            return JSON.response(GroupView(group), status: .created)
        }
        router.get("/v1/groups/:name") { request, context in
            _ = try await self.user(request)
            guard let group = try await self.store.group(context.parameter("name")) else {
                throw APIError.notFound("no group \(context.parameter("name"))")
            }
            return JSON.response(GroupView(group))
        }
        router.patch("/v1/groups/:name") { request, context in
            try self.require(.manageGroups, try await self.user(request))
            let body = try await self.json(request, .object(["description": .optional(.string(maxLength: 4096))]))
            guard var group = try await self.store.group(context.parameter("name")) else {
                throw APIError.notFound("no group \(context.parameter("name"))")
            }
            if let description = body["description"]?.stringValue { group.description = description }
            try await self.store.replaceGroup(group)
            return JSON.response(GroupView(group))
        }
        router.delete("/v1/groups/:name") { request, context in
            try self.require(.manageGroups, try await self.user(request))
            let name = context.parameter("name")
            guard try await self.store.group(name) != nil else { throw APIError.notFound("no group \(name)") }
            let members = try await self.store.groupMembers(name)
            guard members == 0 else { throw APIError.conflict("group \(name) still has \(members) users") }
            _ = try await self.store.deleteGroup(name)
            return JSON.empty(.noContent)
        }

        // API tokens (own; admin: anyone's).
        router.post("/v1/tokens") { request, _ in
            let principal = try await self.user(request)
            try self.require(.manageOwnTokens, principal)
            let body = try await self.json(
                request,
                .object([
                    "name": .required(.string(maxLength: 256, rule: Rules.nonEmpty)),
                    "expiresInMs": .optional(Self.expiresInMs),
                    "user": .optional(.string(maxLength: 128, rule: Rules.name)),
                ]))
            // An admin may make a token for another user (service accounts, first tokens).
            var owner = principal.user
            if let other = body["user"]?.stringValue, other != principal.user {
                guard Policy.decide(.manageAnyTokens, principal: principal) == .allow else {
                    throw APIError(.forbidden, "only an admin may make a token for another user", field: "user")
                }
                guard try await self.store.user(other) != nil else {
                    throw APIError(.invalidField, "no user \(other)", field: "user")
                }
                owner = other
            }
            let now = Date()
            let expiresAt = body["expiresInMs"]?.int64Value.map { now.addingTimeInterval(Double($0) / 1000) }
            let secret = Secrets.newUserToken()
            let record = TokenRecord(
                id: Secrets.newID(), hash: Secrets.tokenHash(secret), user: owner,
                name: body["name"]!.stringValue!, createdAt: now, expiresAt: expiresAt)
            try await self.store.createToken(record)
            return JSON.response(CreatedTokenView(id: record._id, token: secret, expiresAt: Nullable(expiresAt)), status: .created)
        }
        router.get("/v1/tokens") { request, _ in
            let principal = try await self.user(request)
            var owner = principal.user
            if let other = request.query("user"), other != principal.user {
                guard Policy.decide(.manageAnyTokens, principal: principal) == .allow else {
                    throw APIError(.forbidden, "only an admin may list another user's tokens", field: "user")
                }
                owner = other
            }
            let (items, next) = try await self.store.tokensPage(user: owner, try request.page())
            return JSON.response(Page(items: items.map(TokenView.init), next: next?.encoded))
        }
        router.delete("/v1/tokens/:id") { request, context in
            let principal = try await self.user(request)
            let id = context.parameter("id")
            guard let token = try await self.store.token(id: id) else { throw APIError.notFound("no token \(id)") }
            if token.user != principal.user {
                // Another user's token: hidden from non-admins.
                guard Policy.decide(.manageAnyTokens, principal: principal) == .allow else {
                    throw APIError.notFound("no token \(id)")
                }
            }
            _ = try await self.store.revokeToken(id, at: Date())
            return JSON.empty(.noContent)
        }

        // Enrollment tokens (admin).
        router.post("/v1/enrollment-tokens") { request, _ in
            let principal = try await self.user(request)
            try self.require(.manageEnrollmentTokens, principal)
            let body = try await self.json(
                request,
                .object([
                    "name": .required(.string(maxLength: 256, rule: Rules.nonEmpty)),
                    "machine": .optional(.string(maxLength: 128, rule: Rules.name)),
                    "expiresInMs": .optional(Self.expiresInMs),
                ]))
            let now = Date()
            let expiresAt = body["expiresInMs"]?.int64Value.map { now.addingTimeInterval(Double($0) / 1000) }
            let secret = Secrets.newEnrollmentToken()
            let record = EnrollmentTokenRecord(
                id: Secrets.newID(), hash: Secrets.tokenHash(secret), name: body["name"]!.stringValue!,
                machine: body["machine"]?.stringValue, createdBy: principal.user, createdAt: now, expiresAt: expiresAt)
            try await self.store.createEnrollmentToken(record)
            return JSON.response(CreatedTokenView(id: record._id, token: secret, expiresAt: Nullable(expiresAt)), status: .created)
        }
        router.get("/v1/enrollment-tokens") { request, _ in
            try self.require(.manageEnrollmentTokens, try await self.user(request))
            let (items, next) = try await self.store.enrollmentTokensPage(try request.page())
            return JSON.response(Page(items: items.map(EnrollmentTokenView.init), next: next?.encoded))
        }
        router.delete("/v1/enrollment-tokens/:id") { request, context in
            try self.require(.manageEnrollmentTokens, try await self.user(request))
            let id = context.parameter("id")
            guard try await self.store.enrollmentTokenExists(id) else { throw APIError.notFound("no enrollment token \(id)") }
            _ = try await self.store.revokeEnrollmentToken(id, at: Date())
            return JSON.empty(.noContent)
        }
    }

    func checkGroupsExist(_ groups: [String], field: String) async throws {
        for (index, group) in groups.enumerated() where try await store.group(group) == nil {
            throw APIError(.invalidField, "no group \(group)", field: "\(field)[\(index)]")
        }
    }

    func hashPassword(_ password: String) async -> String {
        let iterations = configuration.passwordIterations
        return await offload { PasswordHash(password: password, iterations: iterations).stored }
    }

    /// `POST /v1/login`: a 12-hour token for a user's password. Failures count per user and per client address;
    /// past the limit the answer is 429 with `Retry-After`, whether or not the password is right.
    func login(_ request: Request, context: APIRequestContext) async throws -> Response {
        let body = try await json(
            request,
            .object([
                "user": .required(.string(maxLength: 128, rule: Rules.nonEmpty)),
                "password": .required(.string(maxLength: 1024)),
            ]))
        let name = body["user"]!.stringValue!
        let password = body["password"]!.stringValue!
        let keys = ["user:\(name)", "address:\(context.remoteAddress ?? "unknown")"]
        let now = Date()
        if let wait = limiter.withLock({ $0.retryAfter(keys, now: now) }) {
            var headers = HTTPFields()
            headers[.retryAfter] = String(max(1, Int(wait.rounded(.up))))
            throw APIError(.tooManyRequests, "too many failed logins; try again later", headers: headers)
        }
        let user = try await store.user(name)
        let verified: Bool
        if let user, !user.disabled, let stored = user.passwordHash.flatMap(PasswordHash.init(stored:)) {
            verified = await offload { stored.verify(password) }
        } else {
            // The same work as a real check, so the answer's timing does not tell whether the user exists.
            let decoy = self.decoyHash
            _ = await offload { decoy.verify(password) }
            verified = false
        }
        guard verified, let user else {
            limiter.withLock { $0.fail(keys, now: Date()) }
            throw APIError.unauthenticated("wrong user or password")
        }
        limiter.withLock { $0.succeed("user:\(name)") }
        let expiresAt = Date().addingTimeInterval(configuration.loginTokenLifetime.seconds)
        let secret = Secrets.newUserToken()
        try await store.createToken(
            TokenRecord(
                id: Secrets.newID(), hash: Secrets.tokenHash(secret), user: user.name, name: "login", createdAt: Date(),
                expiresAt: expiresAt))
        return JSON.response(["token": .string(secret), "expiresAt": .string(JSON.timestamp(expiresAt))] as [String: JSONValue])
    }
}
