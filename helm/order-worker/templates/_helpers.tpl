{{/* Names ------------------------------------------------------------------------------------------- */}}

{{- define "order-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "order-worker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* <fullname>-<component>; the fullname is cut at 52 characters so this fits in 63. */}}
{{- define "order-worker.componentName" -}}
{{- printf "%s-%s" (include "order-worker.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "order-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels ------------------------------------------------------------------------------------------ */}}

{{- define "order-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "order-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "order-worker.labels" -}}
helm.sh/chart: {{ include "order-worker.chart" . }}
{{ include "order-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: order-worker
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* dict "root" $ "component" "worker" */}}
{{- define "order-worker.componentLabels" -}}
{{ include "order-worker.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "order-worker.componentSelector" -}}
{{ include "order-worker.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Shared values ----------------------------------------------------------------------------------- */}}

{{- define "order-worker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "order-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "order-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "order-worker.secretName" -}}
{{- default (include "order-worker.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "order-worker.sqlite" -}}
{{- if eq .Values.ledger.backend "sqlite" }}true{{ end }}
{{- end }}

{{- define "order-worker.ledgerClaimName" -}}
{{- default (include "order-worker.componentName" (dict "root" . "component" "ledger")) .Values.ledger.sqlite.persistence.existingClaim }}
{{- end }}

{{/* True when the pre-install/pre-upgrade migration Job runs (so the roles skip their own migration). */}}
{{- define "order-worker.migrationJob" -}}
{{- if and .Values.migrations.enabled (not (include "order-worker.sqlite" .)) }}true{{ end }}
{{- end }}

{{/* The Secret keys the application reads from ORDER_WORKER_SECRETS_DIR, by values key. */}}
{{- define "order-worker.secretKeys" -}}
brokerUrl: order_worker_broker_url
ledgerUrl: order_worker_ledger_url
zerotraceApiKey: order_worker_zerotrace_api_key
zerotraceApiSecret: order_worker_zerotrace_api_secret
zerotraceWebhookSecrets: order_worker_zerotrace_webhook_secrets
itrxApiKey: order_worker_itrx_api_key
itrxApiSecret: order_worker_itrx_api_secret
itrxPreviousApiSecrets: order_worker_itrx_previous_api_secrets
zerotraceProxyUrl: order_worker_zerotrace_proxy_url
itrxProxyUrl: order_worker_itrx_proxy_url
tokenKeys: order_worker_token_keys
{{- end }}

{{- define "order-worker.secretsDir" -}}/run/secrets/order-worker{{- end }}

{{/* Pod pieces ------------------------------------------------------------------------------------- */}}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "order-worker.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every role: dict "root" $ "role" .Values.worker */}}
{{- define "order-worker.podCommon" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "order-worker.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with .role.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if include "order-worker.sqlite" $root }}
{{- /* The three roles share one ReadWriteOnce claim: keep them on one node. */}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (dict "order-worker.io/ledger" (include "order-worker.fullname" $root))) }}
{{- $affinity := mustMergeOverwrite (deepCopy (.role.affinity | default dict)) (dict "podAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term))) }}
affinity:
  {{- toYaml $affinity | nindent 2 }}
{{- else }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod labels: dict "root" $ "component" "worker" "role" .Values.worker */}}
{{- define "order-worker.podLabels" -}}
{{ include "order-worker.componentLabels" . }}
{{- if include "order-worker.sqlite" .root }}
order-worker.io/ledger: {{ include "order-worker.fullname" .root }}
{{- end }}
{{- with .role.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes: dict "root" $ "ledger" true */}}
{{- define "order-worker.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpVolume.sizeLimit }}
- name: secrets
  secret:
    secretName: {{ include "order-worker.secretName" .root }}
    defaultMode: 0440
{{- if and .ledger (include "order-worker.sqlite" .root) }}
- name: ledger
  persistentVolumeClaim:
    claimName: {{ include "order-worker.ledgerClaimName" .root }}
{{- end }}
{{- end }}

{{- define "order-worker.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: secrets
  mountPath: {{ include "order-worker.secretsDir" . }}
  readOnly: true
{{- if and .ledger (include "order-worker.sqlite" .root) }}
- name: ledger
  mountPath: {{ .root.Values.ledger.sqlite.mountPath }}
{{- end }}
{{- end }}

{{/* Container settings shared by every role: dict "root" $ "role" .Values.worker ["env" (list ...)] */}}
{{- define "order-worker.containerCommon" -}}
image: {{ include "order-worker.image" .root | quote }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "order-worker.fullname" .root }}
{{- $env := concat (.env | default list) (.role.extraEnv | default list) }}
{{- with $env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* startup/liveness/readiness probes on /healthz and /readyz: dict "role" .Values.worker "port" "metrics" */}}
{{- define "order-worker.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: {{ .role.startupProbe.periodSeconds }}
  failureThreshold: {{ .role.startupProbe.failureThreshold }}
  timeoutSeconds: {{ .role.startupProbe.timeoutSeconds }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  periodSeconds: {{ .role.livenessProbe.periodSeconds }}
  failureThreshold: {{ .role.livenessProbe.failureThreshold }}
  timeoutSeconds: {{ .role.livenessProbe.timeoutSeconds }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: {{ .role.readinessProbe.periodSeconds }}
  failureThreshold: {{ .role.readinessProbe.failureThreshold }}
  timeoutSeconds: {{ .role.readinessProbe.timeoutSeconds }}
{{- end }}

{{/* Deployment strategy: the SQLite claim is ReadWriteOnce and one writer at a time is the rule. */}}
{{- define "order-worker.strategy" -}}
{{- if include "order-worker.sqlite" . -}}
type: Recreate
{{- else -}}
type: RollingUpdate
rollingUpdate:
  maxSurge: 25%
  maxUnavailable: 0
{{- end }}
{{- end }}
