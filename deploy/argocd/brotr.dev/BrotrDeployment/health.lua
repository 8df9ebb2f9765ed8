-- Argo CD health of a brotr.dev resource, read from its kstatus conditions (Ready, Reconciling,
-- Stalled, each with observedGeneration) as brotr-operator writes them. Plain Lua 5.1, which is
-- what Argo CD's interpreter (gopher-lua) runs. The same rules as deploy/argocd/README.md:
--   spec.paused                                   -> Suspended
--   no status yet, or status.observedGeneration
--   behind metadata.generation                    -> Progressing
--   Stalled=True                                  -> Degraded (the condition's message)
--   Reconciling=True                              -> Progressing
--   Ready=True                                    -> Healthy
--   Ready=False, Reconciling=False                -> Degraded (converged but not working, e.g.
--                                                    a scheduled run that failed)
--   anything else                                 -> Progressing
-- Both kinds share this script (RelayMonitor/health.lua links here): their statuses have the same
-- contract.
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local spec = obj.spec or {}
local status = obj.status or {}
local conditions = status.conditions or {}
local ready = condition(conditions, "Ready")

if spec.paused == true then
  hs.status = "Suspended"
  if ready ~= nil and ready.reason == "Paused" then
    hs.message = text(ready, "paused")
  else
    hs.message = "spec.paused is set; waiting for the operator to report it"
  end
  return hs
end

if #conditions == 0 then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report a status"
  return hs
end

-- A status that describes an older spec says nothing about this one (not even Stalled: the
-- edit may be the fix).
local generation = obj.metadata.generation
local observed = status.observedGeneration
if observed == nil and ready ~= nil then
  observed = ready.observedGeneration
end
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = text(stalled, "stalled")
  return hs
end

local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = text(reconciling, "reconciling")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "ready")
  return hs
end

-- The operator has done all it can for this spec and it still does not work: the operator's
-- own Degraded state (it heals by itself or needs a look, not an edit).
if ready ~= nil and ready.status == "False" and reconciling ~= nil and reconciling.status == "False" then
  hs.status = "Degraded"
  hs.message = text(ready, "not ready")
  return hs
end

hs.status = "Progressing"
hs.message = text(ready, "not ready yet")
return hs
