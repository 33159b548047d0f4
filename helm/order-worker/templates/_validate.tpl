{{/*
Render-time checks. Each refuses an installation that would misbehave at run time, with a message that
says what to change. Included from configmap.yaml, which every installation renders.
*/}}
{{- define "order-worker.validate" -}}
{{- $v := .Values }}
{{- $sqlite := include "order-worker.sqlite" . }}

{{- /* 1. The ledger backend and its URL agree. */}}
{{- $url := $v.secrets.ledgerUrl | default "" }}
{{- if and (not $v.secrets.existingSecret) $url }}
{{- if hasPrefix "sqlite:" $url }}
{{- if not $sqlite }}
{{- fail "order-worker: secrets.ledgerUrl is a SQLite URL but ledger.backend is postgresql. A SQLite ledger serves one replica of each role on one node; more replicas require PostgreSQL: set secrets.ledgerUrl to a postgresql:// URL (or ledger.backend=sqlite for a single node)." }}
{{- else }}
{{- fail "order-worker: with ledger.backend=sqlite the chart places the ledger file itself (ledger.sqlite.*): leave secrets.ledgerUrl empty." }}
{{- end }}
{{- else if not (or (hasPrefix "postgresql://" $url) (hasPrefix "postgres://" $url)) }}
{{- fail "order-worker: secrets.ledgerUrl must start with postgresql:// (or sqlite:/// with ledger.backend=sqlite)." }}
{{- else if $sqlite }}
{{- fail "order-worker: secrets.ledgerUrl is a PostgreSQL URL but ledger.backend is sqlite: set ledger.backend=postgresql." }}
{{- end }}
{{- end }}
{{- if and (not $sqlite) (not $v.secrets.existingSecret) (not $url) }}
{{- fail "order-worker: ledger.backend=postgresql needs the ledger URL: set secrets.ledgerUrl (postgresql://...) or secrets.existingSecret (a Secret with the key order_worker_ledger_url)." }}
{{- end }}

{{- /* 2. SQLite: one replica of each role, no autoscaling. */}}
{{- if $sqlite }}
{{- $why := list }}
{{- if gt (int $v.worker.replicaCount) 1 }}{{ $why = append $why (printf "worker.replicaCount=%d" (int $v.worker.replicaCount)) }}{{ end }}
{{- if gt (int $v.scheduler.replicaCount) 1 }}{{ $why = append $why (printf "scheduler.replicaCount=%d" (int $v.scheduler.replicaCount)) }}{{ end }}
{{- if and $v.webhooks.enabled (gt (int $v.webhooks.replicaCount) 1) }}{{ $why = append $why (printf "webhooks.replicaCount=%d" (int $v.webhooks.replicaCount)) }}{{ end }}
{{- if $v.worker.autoscaling.enabled }}{{ $why = append $why "worker.autoscaling.enabled" }}{{ end }}
{{- if $v.worker.keda.enabled }}{{ $why = append $why "worker.keda.enabled" }}{{ end }}
{{- if and $v.webhooks.enabled $v.webhooks.autoscaling.enabled }}{{ $why = append $why "webhooks.autoscaling.enabled" }}{{ end }}
{{- if $why }}
{{- fail (printf "order-worker: more than one replica requires PostgreSQL, but ledger.backend is sqlite and %s. A SQLite ledger is one file on one node: set ledger.backend=postgresql with a postgresql:// ledger URL, or keep every role at one replica." (join ", " $why)) }}
{{- end }}
{{- end }}

{{- /* 3. Timeouts nest: partner read timeout < actor time limit (60 s) < worker shutdown timeout < grace period. */}}
{{- if ge (float64 $v.config.httpReadTimeout) 60.0 }}
{{- fail (printf "order-worker: config.httpReadTimeout (%v s) must stay below the actor time limit (60 s)." $v.config.httpReadTimeout) }}
{{- end }}
{{- if le (int $v.worker.shutdownTimeoutSeconds) 60 }}
{{- fail (printf "order-worker: worker.shutdownTimeoutSeconds (%d) must exceed the actor time limit (60 s), or in-flight partner calls are cut off on every rollout." (int $v.worker.shutdownTimeoutSeconds)) }}
{{- end }}
{{- if le (int $v.worker.terminationGracePeriodSeconds) (int $v.worker.shutdownTimeoutSeconds) }}
{{- fail (printf "order-worker: worker.terminationGracePeriodSeconds (%d) must exceed worker.shutdownTimeoutSeconds (%d), or Kubernetes kills workers that are still finishing messages." (int $v.worker.terminationGracePeriodSeconds) (int $v.worker.shutdownTimeoutSeconds)) }}
{{- end }}
{{- if and $v.webhooks.enabled (le (int $v.webhooks.terminationGracePeriodSeconds) (add (int $v.webhooks.preStopSleepSeconds) 15)) }}
{{- fail (printf "order-worker: webhooks.terminationGracePeriodSeconds (%d) must exceed webhooks.preStopSleepSeconds (%d) plus the receiver's 15 s shutdown." (int $v.webhooks.terminationGracePeriodSeconds) (int $v.webhooks.preStopSleepSeconds)) }}
{{- end }}

{{- /* 4. Autoscaling. */}}
{{- if and $v.worker.keda.enabled $v.worker.autoscaling.enabled }}
{{- fail "order-worker: enable either worker.keda (queue length) or worker.autoscaling (CPU), not both: KEDA manages its own HorizontalPodAutoscaler." }}
{{- end }}
{{- if and $v.worker.keda.enabled (lt (int $v.worker.keda.minReplicaCount) 1) }}
{{- fail "order-worker: worker.keda.minReplicaCount must be at least 1: scaling the workers to zero would leave the scheduler's polls and re-drives unconsumed." }}
{{- end }}
{{- range $name := list "worker" "webhooks" }}
{{- $a := (index $v $name).autoscaling }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "order-worker: %s.autoscaling.minReplicas (%d) exceeds maxReplicas (%d)." $name (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if and $v.worker.keda.enabled (gt (int $v.worker.keda.minReplicaCount) (int $v.worker.keda.maxReplicaCount)) }}
{{- fail "order-worker: worker.keda.minReplicaCount exceeds maxReplicaCount." }}
{{- end }}

{{- /* 5. Secrets never go through the ConfigMap. */}}
{{- $secretEnv := list "BROKER_URL" "LEDGER_URL" "ZEROTRACE_API_SECRET" "ZEROTRACE_WEBHOOK_SECRETS" "ITRX_API_KEY" "ITRX_API_SECRET" "ITRX_PREVIOUS_API_SECRETS" "TOKEN_KEYS" "ZEROTRACE_PROXY_URL" "ITRX_PROXY_URL" }}
{{- range $name, $_ := $v.config.extraEnv }}
{{- if hasPrefix "ORDER_WORKER_" $name }}
{{- fail (printf "order-worker: config.extraEnv.%s: write the setting name without the ORDER_WORKER_ prefix." $name) }}
{{- end }}
{{- if has (upper $name) $secretEnv }}
{{- fail (printf "order-worker: config.extraEnv.%s is a secret: set it in the Secret (secrets.* or secrets.existingSecret), not in the ConfigMap." $name) }}
{{- end }}
{{- end }}
{{- end }}
