{{/*
Trigger workers (cron, stream, bucket): one Deployment each, same shape, differing by the
module they run and a few settings. Called with (dict "root" $ "component" "<name>").
Names are "<base>-<component>", the base cut so the result stays within 63 characters.
*/}}
{{- define "kfn.worker.fullname" -}}
{{- $base := include "kfn.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base .component -}}
{{- end -}}

{{- define "kfn.worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kfn.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kfn.worker.labels" -}}
{{ include "kfn.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kfn.worker.deployment" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .component -}}
{{- $name := include "kfn.worker.fullname" . -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kfn.worker.labels" . | nindent 4 }}
spec:
  replicas: {{ $values.replicas }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "kfn.worker.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- merge (include "kfn.worker.labels" . | fromYaml) $values.podLabels | toYaml | nindent 8 }}
      {{- with include "kfn.metrics.podAnnotations" (dict "root" $root "values" $values) }}
      annotations:
        {{- . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      {{- /* Workers watch Triggers and write their status. */}}
      automountServiceAccountToken: true
      enableServiceLinks: false
      {{- include "kfn.imagePullSecrets" $root | nindent 6 }}
      {{- /* Time to finish the events in hand and acknowledge them before the kill. */}}
      terminationGracePeriodSeconds: {{ .grace | default 15 }}
      {{- with $values.priorityClassName }}
      priorityClassName: {{ . | quote }}
      {{- end }}
      securityContext:
        {{- include "kfn.podSecurityContext" $root | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "kfn.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["python3", "-m", "kfn.triggers.{{ .component }}"]
          args:
            - --metrics-address=0.0.0.0
            - --metrics-port=9090
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: KFN_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            {{- /* It owns the worker's Leases, so they go with the release. */}}
            - name: KFN_DEPLOYMENT_NAME
              value: {{ $name | quote }}
            - name: KFN_INVOKE_URL
              value: {{ default (include "kfn.activator.invokeUrl" $root) $values.invokeUrl | quote }}
            {{- if eq $root.Values.activator.invoke.auth "rbac" }}
            - name: KFN_INVOKE_TOKEN_FILE
              value: /var/run/secrets/kfn/invoke/token
            {{- end }}
            - name: KFN_LOG_LEVEL
              value: {{ $values.logLevel | quote }}
            - name: KFN_LOG_FORMAT
              value: {{ $root.Values.logging.format | quote }}
            {{- /* Where the Secrets Triggers name may be sent (docs/security.md). */}}
            - name: KFN_REQUIRE_ENDPOINT_OPT_IN
              value: {{ $root.Values.triggerCredentials.requireEndpointOptIn | quote }}
            {{- with $values.maxBufferedMiB }}
            - name: KFN_STREAM_MAX_BUFFERED_MIB
              value: {{ . | quote }}
            {{- end }}
            {{- with $values.asyncRetryDelays }}
            - name: KFN_ASYNC_RETRY_DELAYS
              value: {{ join "," . | quote }}
            {{- end }}
            {{- if .http }}
            {{- /* Its own Service, and the key replicas sign hand-offs of held events with. */}}
            - name: KFN_SERVICE_URL
              value: {{ printf "%s:%v" (include "kfn.serviceUrl" (dict "root" $root "name" $name)) $values.service.port | quote }}
            - name: KFN_HANDOFF_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ $name }}
                  key: handoff-key
            {{- /* What stores sign notifications with (kfn.authn.webhooks). */}}
            - name: KFN_EVENTS_AUTH
              value: {{ $values.events.auth | quote }}
            {{- if eq $values.events.auth "token" }}
            - name: KFN_EVENTS_KEY
              valueFrom:
                secretKeyRef:
                  name: {{ $name }}
                  key: events-key
            - name: KFN_EVENTS_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ $name }}
                  key: events-token
            {{- end }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: 9090
              protocol: TCP
            {{- if .http }}
            - name: http
              containerPort: 8080
              protocol: TCP
            {{- end }}
          livenessProbe:
            httpGet:
              path: /metrics
              port: metrics
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          {{- if .http }}
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: 1
          {{- end }}
          {{- with $values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "kfn.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq $root.Values.activator.invoke.auth "rbac" }}
            - name: invoke-token
              mountPath: /var/run/secrets/kfn/invoke
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
        {{- if eq $root.Values.activator.invoke.auth "rbac" }}
        {{- include "kfn.invokeTokenVolume" $root | nindent 8 }}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{ include "kfn.podDisruptionBudget" (dict "root" $root "name" $name "values" $values "selector" (include "kfn.worker.selectorLabels" .) "labels" (include "kfn.worker.labels" .)) }}
{{- end -}}

{{/*
A worker's ServiceAccount and cluster-wide rights: Triggers live in any namespace, so it
reads them and writes their status; extra rules come in .rules (a YAML list string).
*/}}
{{- define "kfn.worker.rbac" -}}
{{- $root := .root -}}
{{- $name := include "kfn.worker.fullname" . -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kfn.worker.labels" . | nindent 4 }}
automountServiceAccountToken: false
{{- if $root.Values.rbac.create }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels:
    {{- include "kfn.worker.labels" . | nindent 4 }}
rules:
  # The Triggers it serves, in any namespace.
  - apiGroups: ["kfn.dev"]
    resources: ["triggers"]
    verbs: ["get", "list", "watch"]
  # Their conditions and the status fields the worker owns.
  - apiGroups: ["kfn.dev"]
    resources: ["triggers/status"]
    verbs: ["patch"]
  # Invoking the functions they fire, through the activator's invoke door.
  - apiGroups: ["kfn.dev"]
    resources: ["functions"]
    verbs: ["invoke"]
  {{- with .rules }}
  {{- . | nindent 2 }}
  {{- end }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "kfn.worker.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
{{- if .lease }}
---
{{- /* Leader election: only the Leases in the release namespace. */}}
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kfn.worker.labels" . | nindent 4 }}
rules:
  # Leader election: one replica acts at a time.
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "create", "update"]
  # Its own Deployment, made the Leases' owner so they go with the release.
  - apiGroups: ["apps"]
    resources: ["deployments"]
    resourceNames: [{{ $name | quote }}]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kfn.worker.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A worker's metrics Service (cron, stream): port "metrics" only, headless, since its pods are
scraped one by one and nothing calls the Service itself. Called like kfn.worker.deployment.
*/}}
{{- define "kfn.worker.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "kfn.worker.fullname" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "kfn.worker.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  clusterIP: None
  selector:
    {{- include "kfn.worker.selectorLabels" . | nindent 4 }}
  ports:
    - name: metrics
      port: 9090
      targetPort: metrics
      protocol: TCP
{{- end -}}
